<div class="scroll">
<table class="list" id="studies">
% pick = get('selectable', False) and can('forward') and forward_to()
<thead><tr>{{!'<th></th>' if pick else ''}}<th>Patient</th><th>ID</th><th>Date</th><th>Description</th><th>Mod.</th><th>Accession</th><th>Images</th><th></th><th>Viewer</th></tr></thead>
<tbody>
% for s in studies:
<tr class="{{'unread' if not s['read'] else ''}}">
% if pick:
  <td><input type="checkbox" name="study" value="{{s['study_uid']}}" form="forward-selected" aria-label="select"></td>
% end
  <td><a href="/patients/{{s['patient_pk']}}">{{s['patient_name']}}</a></td>
  <td>{{s['patient_id']}}</td>
  <td>{{s['study_date']}}</td>
  <td><a class="study-link" href="{{s['url']}}">{{s['description'] or '(no description)'}}</a></td>
  <td>{{s['modalities']}}</td>
  <td>{{s['accession_number']}}</td>
  <td>{{s['num_instances']}}</td>
  <td>{{'private' if s['private'] else 'public'}}{{'' if s['read'] else ', unread'}}</td>
  <td>
% include('viewerlink.tpl', uid=s['study_uid'])
  </td>
</tr>
% end
% if not studies:
<tr><td colspan="{{10 if pick else 9}}">No studies match.</td></tr>
% end
</tbody>
</table>
</div>
