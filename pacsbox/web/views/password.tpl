% rebase('layout.tpl')
<section class="card narrow">
<h1>Change password</h1>
% if expired:
<p class="warn">Your password has expired or was a one-time password: choose a new one to go on.</p>
% end
% if error:
<p class="error">{{error}}</p>
% end
<form method="post" action="/password">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <label>Current password <input name="old" type="password" autocomplete="current-password" required></label>
  <label>New password <input name="new" type="password" autocomplete="new-password" minlength="8" required></label>
  <label>New password again <input name="again" type="password" autocomplete="new-password" minlength="8" required></label>
  <button type="submit">Change</button>
</form>
</section>
% if not expired:
<section class="card">
<h2>My API tokens</h2>
<p class="hint">A token lets a tool (an AI tool, a gateway) act as you at /dicom-web and /wado without your password (<code>Authorization: Bearer</code>), until it expires or you revoke it.</p>
% if new_token:
<p class="warn">New API token: <code id="new-token">{{new_token}}</code> — shown only now (only its hash is kept).</p>
% end
% if tokens:
<table class="list" id="tokens">
<thead><tr><th>Label</th><th>Created</th><th>Last used</th><th>Expires</th><th>State</th><th></th></tr></thead>
<tbody>
% for t in tokens:
<tr><td>{{t['label']}}</td><td>{{t['created_at']}}</td><td>{{t['last_used_at']}}</td><td>{{t['expires_at']}}</td><td>{{t['state']}}</td>
<td>
% if t['state'] != 'revoked':
<form class="inline" method="post" action="/password/tokens/revoke"><input type="hidden" name="csrf_token" value="{{csrf}}"><input type="hidden" name="token" value="{{t['id']}}"><button type="submit" class="danger">Revoke</button></form>
% end
</td></tr>
% end
</tbody></table>
% end
<form method="post" action="/password/tokens">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <label>Label <input name="label" maxlength="64"></label>
  <label>Days valid (0: until revoked) <input name="days" type="number" min="0" max="3650" value="0"></label>
  <button type="submit">New API token</button>
</form>
</section>
% end
