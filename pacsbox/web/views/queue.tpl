% rebase('layout.tpl')
<h1>{{title}}</h1>
% if any(j['state'] in ('queued', 'running', 'retrying', 'waiting') for j in jobs):
<meta http-equiv="refresh" content="3">
% end
<table class="list">
<tr><th>Job</th><th>What</th><th>To</th><th>Progress</th><th>State</th><th>Tries</th><th>Next try</th><th>Last result</th><th></th></tr>
% for j in jobs:
<tr class="job {{j['state']}}">
  <td><a href="/queue/{{j['id']}}">{{j['id']}}</a></td>
  <td>{{j['kind']}}: {{j['label']}}</td>
  <td>{{j['destination']}}</td>
  <td><progress max="{{j['total'] or 1}}" value="{{j['done']}}"></progress> {{j['done']}}/{{j['total']}}</td>
  <td>{{j['state']}}</td>
  <td>{{j['attempts']}}</td>
  <td>{{j['next_attempt'] or ''}}</td>
  <td>{{j['last_error']}}</td>
  <td>
% if j['state'] in ('failed', 'cancelled'):
    <form class="inline" method="post" action="/queue/{{j['id']}}/retry">
      <input type="hidden" name="csrf_token" value="{{csrf}}">
      <button type="submit">Retry</button>
    </form>
% elif j['state'] != 'done':
    <form class="inline" method="post" action="/queue/{{j['id']}}/cancel">
      <input type="hidden" name="csrf_token" value="{{csrf}}">
      <button type="submit">Cancel</button>
    </form>
% end
  </td>
</tr>
% end
</table>
% if not jobs:
<p>No jobs in the queue.</p>
% end
