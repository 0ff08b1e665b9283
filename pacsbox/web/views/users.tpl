% rebase('layout.tpl')
% soon = ' <small class="hint">(no feature yet)</small>'
<h1>Users and groups</h1>
% if message:
<p class="flash">{{message}}</p>
% end
% if new_password:
<p class="warn">One-time password for <strong>{{new_user}}</strong>: <code id="new-password">{{new_password}}</code> — shown only now; it must be changed at first login.</p>
% end
% if new_token:
<p class="warn">API token for <strong>{{new_user}}</strong>: <code id="new-token">{{new_token}}</code> — shown only now (only its hash is kept); a tool sends it as <code>Authorization: Bearer</code>.</p>
% end
<div class="scroll"><table class="list">
<thead><tr><th>User</th><th>Name</th><th>Group</th><th>Privileges</th><th></th></tr></thead>
<tbody>
% for u in users:
<tr>
  <td>{{u['name']}}{{' (WADO only)' if u['wado_only'] else ''}}{{' (disabled)' if u['disabled'] else ''}}</td>
  <td>{{u['first_name']}} {{u['last_name']}}</td>
  <td>{{u['group']}}</td>
  <td>
  % if u['name'] == 'root':
  all
  % else:
  <form method="post" action="/users/{{u['name']}}" class="privs">
    <input type="hidden" name="csrf_token" value="{{csrf}}">
    <input type="hidden" name="first_name" value="{{u['first_name']}}">
    <input type="hidden" name="last_name" value="{{u['last_name']}}">
    <input type="hidden" name="group" value="{{u['group']}}">
    % for key, label, why in privileges:
    <label title="{{why}}"><input type="checkbox" name="priv_{{key}}" value="1" {{'checked' if key in u['privileges'] else ''}}> {{label}}{{!soon if key in no_feature_yet else ''}}</label>
    % end
    <label><input type="checkbox" name="disabled" value="1" {{'checked' if u['disabled'] else ''}}> disabled</label>
    <button type="submit">Save</button>
  </form>
  % end
  </td>
  <td>
    <form class="inline" method="post" action="/users/{{u['name']}}/password"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit">New password</button></form>
    % if u['name'] != 'root':
    <form class="inline" method="post" action="/users/{{u['name']}}/delete"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit" class="danger">Delete</button></form>
    % end
    <form class="inline" method="post" action="/users/{{u['name']}}/tokens"><input type="hidden" name="csrf_token" value="{{csrf}}"><input name="label" placeholder="token label" maxlength="64" size="12"> <input name="days" type="number" min="0" max="3650" value="0" title="days valid; 0: until revoked" size="4"> <button type="submit">New API token</button></form>
  </td>
</tr>
% end
</tbody></table></div>
<h2>API tokens</h2>
<p class="hint">A token logs a tool (an AI tool, a gateway) in as its user at /dicom-web and /wado, with the user's privileges, until it expires or is revoked; it does not follow password expiry.</p>
<div class="scroll"><table class="list" id="tokens">
<thead><tr><th>User</th><th>Label</th><th>Created</th><th>Last used</th><th>Expires</th><th>State</th><th></th></tr></thead>
<tbody>
% for u in users:
% for t in u['tokens']:
<tr>
  <td>{{u['name']}}</td><td>{{t['label']}}</td><td>{{t['created_at']}}</td><td>{{t['last_used_at']}}</td><td>{{t['expires_at']}}</td><td>{{t['state']}}</td>
  <td>
  % if t['state'] != 'revoked':
  <form class="inline" method="post" action="/users/{{u['name']}}/tokens/revoke"><input type="hidden" name="csrf_token" value="{{csrf}}"><input type="hidden" name="token" value="{{t['id']}}"><button type="submit" class="danger">Revoke</button></form>
  % end
  </td>
</tr>
% end
% end
</tbody></table></div>
<h2>Add a user</h2>
<p class="hint">Privileges marked "no feature yet" can be given now; they gate nothing until their feature lands.</p>
<form method="post" action="/users" class="card">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <label>User name <input name="name" required pattern="[A-Za-z0-9][A-Za-z0-9._-]*"></label>
  <label>First name <input name="first_name"></label>
  <label>Last name <input name="last_name"></label>
  <label>Group <select name="group"><option value="">(none)</option>
  % for g in groups:
  <option value="{{g['name']}}">{{g['name']}}</option>
  % end
  </select></label>
  <fieldset><legend>Privileges</legend>
  % for key, label, why in privileges:
  <label title="{{why}}"><input type="checkbox" name="priv_{{key}}" value="1"> {{label}}{{!soon if key in no_feature_yet else ''}}</label>
  % end
  <label><input type="checkbox" name="wado_only" value="1"> dedicated WADO account</label>
  </fieldset>
  <button type="submit">Add user</button>
</form>
<h2>Groups</h2>
<p class="hint">A group's description is matched against a private study's Institution Name.</p>
<ul>
% for g in groups:
<li>{{g['name']}}: {{g['description']}} ({{g['members']}} members)
<form class="inline" method="post" action="/groups/{{g['name']}}/delete"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit" class="danger">Delete</button></form></li>
% end
</ul>
<form method="post" action="/groups" class="card">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <label>Group name <input name="name" required></label>
  <label>Description (institution) <input name="description"></label>
  <button type="submit">Add group</button>
</form>
