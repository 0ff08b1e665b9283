% rebase('layout.tpl')
% from urllib.parse import quote
<h1>AE table</h1>
% if ping:
<p class="{{'flash' if ping['ok'] else 'error'}}" id="ping-result">Ping {{ping['title']}}: {{ping['message']}}</p>
% end
<div class="scroll"><table class="list">
<thead><tr><th>Title</th><th>Host</th><th>IP</th><th>Port</th><th>Access</th><th>Worklist</th><th>Archive folder</th><th>Description</th><th>Last in</th><th>Last out</th><th></th></tr></thead>
<tbody>
% for a in aes:
% path = '/aes/' + quote(a['title'], safe='')
% seen = associations.get(a['title'], {'in': [], 'out': []})
<tr><td>{{a['title']}}</td><td>{{a['hostname']}}</td><td>{{a['ipaddr']}}</td><td>{{a['port'] or ''}}</td>
<td>{{'allow' if a['allowaccess'] else 'deny'}}</td><td>{{'SCP' if a['worklist'] else ''}}</td><td>{{a['archivedir']}}</td><td>{{a['description']}}</td>
% for way in ('in', 'out'):
% last = seen[way][0] if seen[way] else None
<td class="assoc-{{way}}">{{(last['result'] + ' ' + last['last'].replace('T', ' ')) if last else ''}}</td>
% end
<td>
<form class="inline" method="post" action="{{path}}/ping"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit">Ping</button></form>
% if a['worklist'] and a['port'] and can('modify'):
<form class="inline" method="post" action="{{path}}/worklist"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit">Get worklist</button></form>
% end
% if can('admin'):
<a class="button" href="/aes?edit={{quote(a['title'], safe='')}}#ae-form">Edit</a>
<form class="inline" method="post" action="{{path}}/delete"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit" class="danger">Delete</button></form>
% end
</td></tr>
% end
</tbody></table></div>
% logged = [(t, seen) for t, seen in associations.items() if seen['in'] or seen['out']]
% if logged:
<h2 id="associations">Recent associations</h2>
% for t, seen in logged:
<details class="card" id="assoc-{{t}}"><summary>{{t}}</summary>
<table class="list"><thead><tr><th>Way</th><th>Last</th><th>Count</th><th>Service</th><th>Calling AE</th><th>Called AE</th><th>Address</th><th>Result</th></tr></thead><tbody>
% for way in ('in', 'out'):
% for r in seen[way]:
<tr><td>{{way}}</td><td>{{r['last'].replace('T', ' ')}}</td><td>{{r['count']}}</td><td>{{r['service']}}</td><td>{{r['calling_ae']}}</td><td>{{r['called_ae']}}</td><td>{{r['address']}}</td>
<td class="{{'' if r['result'] == 'accepted' else 'error'}}">{{r['result']}}{{(': ' + r['detail']) if r['detail'] else ''}}</td></tr>
% end
% end
</tbody></table></details>
% end
% end
<h2 id="rejected">Rejected associations</h2>
<p class="hint">Associations refused in the last {{log_days}} days, with the reason and the fix.</p>
% if rejected:
<div class="scroll"><table class="list" id="rejected-list">
<thead><tr><th>Calling AE</th><th>Address</th><th>Called AE</th><th>Last</th><th>Count</th><th>Reason</th><th>Fix</th></tr></thead>
<tbody>
% for r in rejected:
% fix = r['fix']
% path = '/aes/' + quote(r['calling_ae'], safe='')
<tr><td>{{r['calling_ae']}}</td><td>{{r['address']}}</td><td>{{r['called_ae']}}</td><td>{{r['last'].replace('T', ' ')}}</td><td>{{r['count']}}</td>
<td title="{{r['detail']}}">{{r['words']}}</td>
<td>
% if can('admin') and fix['kind'] == 'add':
<a class="button" href="{{url('/aes', add=r['calling_ae'], ipaddr=r['address'])}}#ae-form">Add this AE</a>
% elif can('admin') and fix['kind'] == 'allow':
<form class="inline" method="post" action="{{path}}/allow"><input type="hidden" name="csrf_token" value="{{csrf}}"><input type="hidden" name="address" value="{{r['address']}}"><button type="submit">Allow this address</button></form>
% elif can('admin') and fix['kind'] == 'enable':
<form class="inline" method="post" action="{{path}}/enable"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit">Enable</button></form>
% else:
{{fix['words']}}
% end
</td></tr>
% end
</tbody></table></div>
% else:
<p id="rejected-none">None.</p>
% end
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
  <label><input type="checkbox" name="worklist" value="1" {{'checked' if values.get('worklist') else ''}}> Modality Worklist SCP (polled every WorklistPollInterval minutes)</label>
  <label>Archive folder <input name="archivedir" placeholder="/srv/pacsbox/other" value="{{values['archivedir']}}"></label>
  <label>Description <input name="description" value="{{values['description']}}"></label>
  <button type="submit">Save</button>
</form>
% end
