% rebase('layout.tpl')
<section class="card narrow">
<h1>Delete {{kind}}?</h1>
<p>This deletes <strong>{{label}}</strong> ({{count}} image{{'' if count == 1 else 's'}}) from the index and the disk. It cannot be undone, and it is written in the system journal.</p>
<form method="post" action="{{action}}">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <input type="hidden" name="confirm" value="yes">
  <button type="submit" class="danger">Delete</button>
  <a href="/studies">Cancel</a>
</form>
</section>
