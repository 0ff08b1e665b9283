% rebase('layout.tpl')
<h1>System journal</h1>
<form class="search" method="get" action="/journal">
  <label>User <input name="user" value="{{q.get('user','')}}"></label>
  <label>Action <input name="action" value="{{q.get('action','')}}" placeholder="login, delete, view-private…"></label>
  <button type="submit">Filter</button>
</form>
<div class="scroll"><table class="list" id="journal">
<thead><tr><th>Time</th><th>User</th><th>Address</th><th>Action</th><th>Object</th><th>Detail</th></tr></thead>
<tbody>
% for e in entries:
<tr><td>{{e['time']}}</td><td>{{e['user']}}</td><td>{{e['address']}}</td><td>{{e['action']}}</td><td class="uid">{{e['target']}}</td><td>{{e['detail']}}</td></tr>
% end
</tbody></table></div>
% if next_url:
<p><a class="button" href="{{next_url}}">Older entries</a></p>
% end
