% rebase('layout.tpl')
<h1>AE table</h1>
% if ping:
<p class="{{'flash' if ping['ok'] else 'error'}}" id="ping-result">Ping {{ping['title']}}: {{ping['message']}}</p>
% end
<div class="scroll"><table class="list">
<thead><tr><th>Title</th><th>Host</th><th>IP</th><th>Port</th><th>Access</th><th>Archive folder</th><th>Description</th><th></th></tr></thead>
<tbody>
% for a in aes:
<tr><td>{{a['title']}}</td><td>{{a['hostname']}}</td><td>{{a['ipaddr']}}</td><td>{{a['port'] or ''}}</td>
<td>{{'allow' if a['allowaccess'] else 'deny'}}</td><td>{{a['archivedir']}}</td><td>{{a['description']}}</td>
<td>
<form class="inline" method="post" action="/aes/{{a['title']}}/ping"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit">Ping</button></form>
% if can('admin'):
<form class="inline" method="post" action="/aes/{{a['title']}}/delete"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit" class="danger">Delete</button></form>
% end
</td></tr>
% end
</tbody></table></div>
% if can('admin'):
<h2>Add or change an AE</h2>
<form method="post" action="/aes" class="card">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <label>AE title <input name="title" required maxlength="16"></label>
  <label>Host name <input name="hostname"></label>
  <label>IP address (only accept from) <input name="ipaddr"></label>
  <label>Port <input name="port" type="number" min="1" max="65535"></label>
  <label><input type="checkbox" name="allowaccess" value="1" checked> allow access</label>
  <label>Archive folder <input name="archivedir" placeholder="/srv/pacsbox/other"></label>
  <label>Description <input name="description"></label>
  <button type="submit">Save</button>
</form>
% end
