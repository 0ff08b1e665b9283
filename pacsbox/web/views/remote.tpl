% rebase('layout.tpl')
% from pacsbox.outbound.query import text
% v = values
<h1>Remote query and retrieve</h1>
<form method="get" action="/remote" class="card" id="remote-form">
  <label>Remote AE <select name="ae" required>
% for t in aes:
    <option value="{{t}}" {{'selected' if t == v['ae'] else ''}}>{{t}}</option>
% end
  </select></label>
  <label>Level <select name="level">
% for lv in ('patient', 'study', 'series'):
    <option value="{{lv}}" {{'selected' if lv == v['level'] else ''}}>{{lv}}</option>
% end
  </select></label>
  <label>Patient name <input name="patient_name" value="{{v['patient_name']}}" placeholder="DOE^*"></label>
  <label>Patient ID <input name="patient_id" value="{{v['patient_id']}}"></label>
  <label>Study date from <input name="date_from" type="date" value="{{v['date_from']}}"></label>
  <label>to <input name="date_to" type="date" value="{{v['date_to']}}"></label>
  <label>Accession number <input name="accession" value="{{v['accession']}}"></label>
  <label>Modality <input name="modality" value="{{v['modality']}}" maxlength="16"></label>
  <label>Study Instance UID (series level) <input name="study" value="{{v['study']}}"></label>
  <button type="submit">Search</button>
</form>
% if not aes:
<p class="hint">No AE of the AE table has a host and port to query.</p>
% end
% if error:
<p class="error" id="remote-error">{{error}}</p>
% end
% if results is not None:
<p id="remote-count">{{len(results)}} {{'match' if len(results) == 1 else 'matches'}} on {{v['ae']}}</p>
<div class="scroll"><table class="list" id="remote-results">
% if v['level'] == 'patient':
<thead><tr><th>Patient ID</th><th>Name</th><th>Birth date</th><th>Sex</th><th>Local</th><th></th></tr></thead>
% elif v['level'] == 'study':
<thead><tr><th>Date</th><th>Patient ID</th><th>Name</th><th>Accession</th><th>Modalities</th><th>Description</th><th>Local</th><th></th></tr></thead>
% else:
<thead><tr><th>No.</th><th>Modality</th><th>Description</th><th>Series UID</th><th>Local</th><th></th></tr></thead>
% end
<tbody>
% for r in results:
<tr class="remote {{r['local']}}">
% if v['level'] == 'patient':
  <td>{{text(r.get('PatientID', ''))}}</td><td>{{text(r.get('PatientName', ''))}}</td><td>{{text(r.get('PatientBirthDate', ''))}}</td><td>{{text(r.get('PatientSex', ''))}}</td>
% elif v['level'] == 'study':
  <td>{{text(r.get('StudyDate', ''))}}</td><td>{{text(r.get('PatientID', ''))}}</td><td>{{text(r.get('PatientName', ''))}}</td><td>{{text(r.get('AccessionNumber', ''))}}</td><td>{{text(r.get('ModalitiesInStudy', ''))}}</td><td>{{text(r.get('StudyDescription', ''))}}</td>
% else:
  <td>{{text(r.get('SeriesNumber', ''))}}</td><td>{{text(r.get('Modality', ''))}}</td><td>{{text(r.get('SeriesDescription', ''))}}</td><td>{{text(r.get('SeriesInstanceUID', ''))}}</td>
% end
  <td class="local">{{r['local']}} ({{r['local_count']}}/{{'?' if r['remote_count'] is None else r['remote_count']}} {{r['count_of']}})</td>
  <td>
% if v['level'] == 'patient':
    <a class="button" href="{{url('/remote', ae=v['ae'], level='study', patient_id=text(r.get('PatientID', '')))}}">Studies</a>
% else:
%   if v['level'] == 'study':
    <a class="button" href="{{url('/remote', ae=v['ae'], level='series', study=text(r.get('StudyInstanceUID', '')))}}">Series</a>
%   end
%   if can('move'):
    <form class="inline" method="post" action="/remote/retrieve">
      <input type="hidden" name="csrf_token" value="{{csrf}}">
      <input type="hidden" name="ae" value="{{v['ae']}}">
      <input type="hidden" name="study" value="{{text(r.get('StudyInstanceUID', ''))}}">
%     if v['level'] == 'series':
      <input type="hidden" name="series" value="{{text(r.get('SeriesInstanceUID', ''))}}">
%     end
      <button type="submit">Retrieve</button>
    </form>
%   end
% end
  </td>
</tr>
% end
</tbody></table></div>
% end
