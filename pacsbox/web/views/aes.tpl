% rebase('layout.tpl')
% from urllib.parse import quote
<h1>AE table</h1>
% if ping:
<p class="{{'flash' if ping['ok'] else 'error'}}" id="ping-result">Ping {{ping['title']}}: {{ping['message']}}</p>
% end
<div class="scroll"><table class="list">
<thead><tr><th>Title</th><th>Host</th><th>IP</th><th>Port</th><th>Access</th><th>Archive folder</th><th>Description</th><th></th></tr></thead>
<tbody>
% for a in aes:
% path = '/aes/' + quote(a['title'], safe='')
<tr><td>{{a['title']}}</td><td>{{a['hostname']}}</td><td>{{a['ipaddr']}}</td><td>{{a['port'] or ''}}</td>
<td>{{'allow' if a['allowaccess'] else 'deny'}}</td><td>{{a['archivedir']}}</td><td>{{a['description']}}</td>
<td>
<form class="inline" method="post" action="{{path}}/ping"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit">Ping</button></form>
% if can('admin'):
<a class="button" href="/aes?edit={{quote(a['title'], safe='')}}#ae-form">Edit</a>
<form class="inline" method="post" action="{{path}}/delete"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit" class="danger">Delete</button></form>
% end
</td></tr>
% end
</tbody></table></div>
% if can('admin'):
<h2 id="ae-form">Add or change an AE</h2>
% if error:
<p class="error" id="ae-error">{{error}}</p>
% end
<p class="hint">Saving a title that is already in the table replaces its row with these values.</p>
<form method="post" action="/aes" class="card">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <label>AE title <input name="title" required maxlength="16" value="{{values['title']}}"></label>
  <label>Host name <input name="hostname" value="{{values['hostname']}}"></label>
  <label>IP address (only accept from) <input name="ipaddr" value="{{values['ipaddr']}}"></label>
  <label>Port <input name="port" type="number" min="1" max="65535" value="{{values['port']}}"></label>
  <label><input type="checkbox" name="allowaccess" value="1" {{'checked' if values['allowaccess'] else ''}}> allow access</label>
  <label>Archive folder <input name="archivedir" placeholder="/srv/pacsbox/other" value="{{values['archivedir']}}"></label>
  <label>Description <input name="description" value="{{values['description']}}"></label>
  <button type="submit">Save</button>
</form>
% end
