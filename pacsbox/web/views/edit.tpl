% rebase('layout.tpl')
<h1>{{title}}</h1>
<p class="hint">Saving rewrites every stored file of this {{title.split()[-1]}} with the new values, as a job (what is sent, exported and rebuilt carries them); the original files are kept in the holding area.</p>
<form method="post" action="{{action}}" class="card">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  % for name, value in values.items():
  <label>{{name.replace('_', ' ').capitalize()}} <input name="{{name}}" value="{{value}}"></label>
  % end
  <button type="submit">Save</button>
</form>
