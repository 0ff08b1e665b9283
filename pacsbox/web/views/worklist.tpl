% rebase('layout.tpl')
<h1>Worklist</h1>
<p class="hint">What the modalities get when they ask for their worklist: one line per scheduled procedure step. A modality is given the scheduled ones of its station.</p>
<form class="search" method="get" action="/worklist">
  <label>Date <input name="date" type="date" value="{{filters['date']}}"></label>
  <label>Modality <select name="modality"><option value="">any</option>
% for m in modalities:
    <option {{'selected' if filters['modality'].upper() == m else ''}}>{{m}}</option>
% end
  </select></label>
  <label>Station AE <input name="station" maxlength="16" value="{{filters['station']}}" placeholder="any, * and ? allowed"></label>
  <label>Status <select name="status"><option value="">any</option>
% for s in states:
    <option {{'selected' if filters['status'] == s else ''}}>{{s}}</option>
% end
  </select></label>
  <button type="submit">Show</button>
</form>
% if can('modify'):
<p><a class="button" href="/worklist/new" id="schedule">Schedule a procedure</a></p>
% end
<div class="scroll"><table class="list" id="worklist">
<thead><tr><th>Start</th><th>Modality</th><th>Station AE</th><th>Patient</th><th>Patient ID</th><th>Accession</th><th>Procedure</th><th>Status</th><th></th></tr></thead>
<tbody>
% for i in items:
<tr><td>{{i['start']}}</td><td>{{i['modality']}}</td><td>{{i['station_ae']}}</td><td>{{i['patient_name']}}</td><td>{{i['patient_id']}}</td>
<td>{{i['accession']}}</td><td>{{i['procedure']}}</td><td class="status">{{i['status']}}</td>
<td>
% if can('modify'):
% if i['status'] in ('scheduled', 'in progress'):
<form class="inline" id="discontinue-{{i['id']}}" method="post" action="/worklist/{{i['id']}}/discontinue"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit">Discontinue</button></form>
% end
<form class="inline" id="delete-{{i['id']}}" method="post" action="{{i['delete']}}"><input type="hidden" name="csrf_token" value="{{csrf}}"><button type="submit" class="danger">Remove</button></form>
% end
</td></tr>
% end
% if not items:
<tr><td colspan="9">Nothing scheduled{{' that matches' if any(filters.values()) else ''}}.</td></tr>
% end
</tbody></table></div>
