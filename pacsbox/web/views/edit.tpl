% rebase('layout.tpl')
<h1>{{title}}</h1>
<p class="hint">Changes the index (searches, queries, these pages); the stored files stay as received.</p>
<form method="post" action="{{action}}" class="card">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  % for name, value in values.items():
  <label>{{name.replace('_', ' ').capitalize()}} <input name="{{name}}" value="{{value}}"></label>
  % end
  <button type="submit">Save</button>
</form>
