% rebase('layout.tpl')
<h1>Patients</h1>
<form class="search" method="get" action="/patients">
  <label>Patient name <input name="patient_name" value="{{q.get('patient_name','')}}"></label>
  <label>Patient ID <input name="patient_id" value="{{q.get('patient_id','')}}"></label>
  <button type="submit">Search</button>
</form>
<div class="scroll"><table class="list">
<thead><tr><th>Name</th><th>ID</th><th>Birth date</th><th>Sex</th><th>Studies</th><th>Images</th><th></th></tr></thead>
<tbody>
% for p in patients:
<tr><td><a href="{{p['url']}}">{{p['patient_name'] or '(no name)'}}</a></td><td>{{p['patient_id']}}</td><td>{{p['birth_date']}}</td>
<td>{{p['sex']}}</td><td>{{p['num_studies']}}</td><td>{{p['num_instances']}}</td><td>{{'private' if p['private'] else 'public'}}</td></tr>
% end
</tbody></table></div>
% if next_url:
<p><a class="button" href="{{next_url}}">Next page</a></p>
% end
