% rebase('layout.tpl')
<h1>{{title}}</h1>
% if any(j['state'] in ('queued', 'running', 'retrying', 'waiting') for j in jobs):
<meta http-equiv="refresh" content="3">
% end
<table class="list">
<tr><th>Job</th><th>What</th><th>To</th><th>Progress</th><th>State</th><th>Tries</th><th>Next try</th><th>Last result</th><th></th></tr>
% for j in jobs:
<tr class="job {{j['state']}}">
  <td><a href="/jobs/{{j['id']}}">{{j['id']}}</a></td>
  <td>{{j['kind']}}:
  % if j['link']:
  <a href="{{j['link']}}">{{j['label']}}</a></td>
  % else:
  {{j['label']}}</td>
  % end
  <td>{{j['destination']}}</td>
  <td><progress max="{{j['total'] or 1}}" value="{{j['done']}}"></progress>
      {{'%d%%' % j['percent'] if j['percent'] is not None else ''}} {{j['done']}}/{{j['total']}}</td>
  <td>{{j['state']}}</td>
  <td>{{j['attempts']}}</td>
  <td>{{j['next_attempt'] or ''}}</td>
  <td>{{j['last_error']}}
% if j['download']:
    <a class="download" href="{{j['download']}}">Download ZIP</a>
% end
  </td>
  <td>
% if j['state'] in ('failed', 'cancelled'):
    <form class="inline" method="post" action="/jobs/{{j['id']}}/retry">
      <input type="hidden" name="csrf_token" value="{{csrf}}">
      <button type="submit">Retry</button>
    </form>
% elif j['state'] != 'done':
    <form class="inline" method="post" action="/jobs/{{j['id']}}/cancel">
      <input type="hidden" name="csrf_token" value="{{csrf}}">
      <button type="submit">Cancel</button>
    </form>
% end
  </td>
</tr>
% end
</table>
% if not jobs:
<p>No jobs.</p>
% end
