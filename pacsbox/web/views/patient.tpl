% rebase('layout.tpl')
<h1>{{patient['patient_name'] or '(no name)'}} <small>{{patient['patient_id']}}</small></h1>
<p>Born {{patient['birth_date'] or '?'}}, sex {{patient['sex'] or '?'}}, {{'private' if patient['private'] else 'public'}}.</p>
<div class="actions">
% if can('modify'):
  <form class="inline" method="post" action="/patients/{{patient['pk']}}/private">
    <input type="hidden" name="csrf_token" value="{{csrf}}">
    <input type="hidden" name="private" value="{{'no' if patient['private'] else 'yes'}}">
    <button type="submit">Make {{'public' if patient['private'] else 'private'}}</button>
  </form>
  <a class="button" href="/patients/{{patient['pk']}}/edit">Edit</a>
  <a class="button danger" href="/patients/{{patient['pk']}}/delete">Delete…</a>
  <a class="button" id="schedule" href="/worklist/new?patient={{patient['pk']}}">Schedule a procedure</a>
% end
% include('forwardform.tpl', action='/patients/%d/forward' % patient['pk'])
</div>
% include('studytable.tpl', studies=studies)
