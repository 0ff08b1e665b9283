% rebase('layout.tpl')
<h1>Routes</h1>
<p class="hint">A route sends every study that matches it to its destinations by itself, once no new image has come for a while; images that come later follow.</p>
<div class="scroll"><table class="list" id="routes">
<thead><tr><th>Name</th><th>To</th><th>What and when</th><th></th></tr></thead>
<tbody>
% for r in routes:
<tr><td>{{r['name']}}</td><td>{{', '.join(r['destinations'])}}</td><td>{{r['describe']}}</td>
<td><form class="inline" method="post" action="/routes/{{r['name']}}/delete"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit" class="danger">Remove</button></form></td></tr>
% end
% if not routes:
<tr><td colspan="4">No routes: nothing leaves the box by itself.</td></tr>
% end
</tbody></table></div>
<h2 id="route-form">Add or change a route</h2>
% if error:
<p class="error" id="route-error">{{error}}</p>
% end
<p class="hint">Saving a name that is already in the table replaces that route. Patterns take * and ?, and ignore case.</p>
<form method="post" action="/routes" class="card">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <label>Name <input name="name" required maxlength="64" value="{{values.get('name', '')}}"></label>
  <label>To <select name="to" multiple required>
% for d in destinations:
    <option>{{d}}</option>
% end
  </select></label>
  <label>From calling AE <input name="from_ae" maxlength="16" placeholder="any" value="{{values.get('from_ae', '')}}"></label>
  <label>Keys, one KEY=PATTERN per line ({{', '.join(keys)}})
    <textarea name="match" rows="3" placeholder="Modality=CT">{{values.get('match', '')}}</textarea></label>
  <fieldset><legend>When</legend>
    <label><input type="radio" name="when" value="now" {{'checked' if values.get('when') in ('now', '', None) else ''}}> as soon as the study is complete</label>
    <label><input type="radio" name="when" value="window" {{'checked' if values.get('when') == 'window' else ''}}> inside the window <input name="window" placeholder="22:00-06:00" value="{{values.get('window', '')}}"></label>
    <label><input type="radio" name="when" value="at" {{'checked' if values.get('when') == 'at' else ''}}> at <input name="at" placeholder="02:00" value="{{values.get('at', '')}}"></label>
  </fieldset>
  <label>Retries <input name="retries" type="number" min="0" value="{{values.get('retries', 3)}}"></label>
  <label><input type="checkbox" name="commit" value="1"> ask for storage commitment</label>
  <label><input type="checkbox" name="purge_after" value="1"> delete the local copy once every destination has it</label>
  <label><input type="checkbox" name="notify" value="1"> only notify the destination that the study is available (Instance Availability Notification)</label>
  <button type="submit">Save</button>
</form>
