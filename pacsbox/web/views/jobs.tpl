% rebase('layout.tpl')
<h1>{{title}}</h1>
% if any(j['state'] == 'running' for j in jobs):
<meta http-equiv="refresh" content="2">
% end
<table class="list">
<tr><th>Job</th><th>What</th><th>Progress</th><th>State</th><th>Started</th><th>Result</th></tr>
% for j in jobs:
<tr class="job {{j['state']}}">
  <td><a href="/jobs/{{j['id']}}">{{j['id']}}</a></td>
  <td>{{j['kind']}}:
  % if j['link']:
  <a href="{{j['link']}}">{{j['label']}}</a></td>
  % else:
  {{j['label']}}</td>
  % end
  <td><progress max="{{j['total'] or 1}}" value="{{j['done']}}"></progress>
      {{'%d%%' % j['percent'] if j['percent'] is not None else ''}}</td>
  <td>{{j['state']}}</td>
  <td>{{j['started']}}</td>
  <td>{{j['message']}}</td>
</tr>
% end
</table>
% if not jobs:
<p>No jobs.</p>
% end
