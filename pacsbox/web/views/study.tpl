% rebase('layout.tpl')
% s = study
<h1>{{s['description'] or 'Study'}} <small>{{s['study_date']}} {{s['study_time']}}</small></h1>
<dl class="facts">
  <dt>Patient</dt><dd><a href="/patients/{{s['patient_pk']}}">{{s['patient_name']}}</a> ({{s['patient_id']}})</dd>
  <dt>Accession</dt><dd>{{s['accession_number']}}</dd>
  <dt>Study ID</dt><dd>{{s['study_id']}}</dd>
  <dt>Referring</dt><dd>{{s['referring_physician']}}</dd>
  <dt>Reading</dt><dd>{{s['reading_physician']}}</dd>
  <dt>Institution</dt><dd>{{s['institution_name']}}</dd>
  <dt>Status</dt><dd>{{'private' if s['private'] else 'public'}}, {{'read' if s['read'] else 'unread'}}</dd>
  <dt>Study UID</dt><dd class="uid">{{s['study_uid']}}</dd>
</dl>
<div class="actions">
  % include('viewerlink.tpl', uid=s['study_uid'], cls='button')
% if can('mark'):
  <form class="inline" method="post" action="{{s['url']}}/read">
    <input type="hidden" name="csrf_token" value="{{csrf}}">
    <input type="hidden" name="read" value="{{'no' if s['read'] else 'yes'}}">
    <button type="submit">Mark {{'unread' if s['read'] else 'read'}}</button>
  </form>
% end
% if can('modify'):
  <form class="inline" method="post" action="{{s['url']}}/private">
    <input type="hidden" name="csrf_token" value="{{csrf}}">
    <input type="hidden" name="private" value="{{'no' if s['private'] else 'yes'}}">
    <button type="submit">Make {{'public' if s['private'] else 'private'}}</button>
  </form>
  <a class="button" href="{{s['url']}}/edit">Edit</a>
  <a class="button danger" href="{{s['url']}}/delete">Delete…</a>
% end
% if can('export'):
  <form class="inline" method="post" action="{{s['url']}}/export">
    <input type="hidden" name="csrf_token" value="{{csrf}}">
    <button type="submit">Export DICOMDIR (ZIP)</button>
  </form>
  <form class="inline" method="post" action="{{s['url']}}/burn">
    <input type="hidden" name="csrf_token" value="{{csrf}}">
    <select name="media"><option value="cd">CD</option><option value="dvd">DVD</option>
      <option value="dvd-dl">DVD-DL</option></select>
    <button type="submit">Burn disc</button>
  </form>
% end
% include('forwardform.tpl', action=s['url'] + '/forward')
% include('printform.tpl', action=s['url'] + '/print', label='Print study')
</div>
<h2>Series</h2>
<div class="tiles">
% for se in series:
<a class="tile series-link" href="{{se['url']}}">
  % if se['thumb']:
  <img src="{{se['thumb']}}" alt="series {{se['series_number']}}" loading="lazy">
  % end
  <span>{{se['modality']}} #{{se['series_number'] if se['series_number'] is not None else ''}} {{se['description']}}<br>{{se['num_instances']}} images</span>
</a>
% end
</div>
% if commitments:
<h2>Storage commitment</h2>
<table class="commitments">
  <tr><th>Image</th><th>Destination</th><th>Commitment</th></tr>
%   for c in commitments:
  <tr class="{{c['state']}}"><td class="uid">{{c['sop_instance_uid']}}</td><td>{{c['destination']}}</td>
    <td>
%     if c['state'] == 'committed':
    committed by {{c['by']}} at {{c['at']}}
%     elif c['state'] == 'failed':
    commitment failed: {{c['reason']}}
%     else:
    pending since {{c['requested']}}
%     end
    </td></tr>
%   end
</table>
% end
% if performed_steps:
<h2>Performed procedure steps</h2>
<table class="mpps">
  <tr><th>Step</th><th>Status</th><th>Modality</th><th>Station</th><th>Started</th><th>Ended</th><th>Description</th></tr>
%   for p in performed_steps:
  <tr class="{{p['status'].lower().replace(' ', '-')}}"><td class="uid">{{p['pps_id'] or p['sop_instance_uid']}}</td><td>{{p['status']}}</td>
    <td>{{p['modality']}}</td><td>{{p['station_ae']}}</td><td>{{p['start']}}</td><td>{{p['end']}}</td><td>{{p['description']}}</td></tr>
%   end
</table>
% end
<h2>Notes</h2>
% if notes:
<ul class="notes">
%   for n in notes:
  <li><span class="meta">{{n['created']}} {{n['author']}}{{(' on image ' + n['sop_instance_uid']) if n['sop_instance_uid'] else ''}}</span>
    <p>{{n['text']}}</p>
%     if n['file_url']:
    <a href="{{n['file_url']}}">{{n['file_name']}}</a> ({{n['size']}} bytes)
%       if n['content_type'] == 'application/pdf' and can('upload'):
    <form class="inline" method="post" action="/notes/{{n['id']}}/dicom">
      <input type="hidden" name="csrf_token" value="{{csrf}}">
      <button type="submit">Add to study as DICOM</button>
    </form>
%       end
%     end
%     if me and (me.name == n['author'] or can('admin')):
    <form class="inline" method="post" action="/notes/{{n['id']}}/delete">
      <input type="hidden" name="csrf_token" value="{{csrf}}">
      <button type="submit" class="danger">Remove</button>
    </form>
%     end
  </li>
%   end
</ul>
% end
% if can('upload'):
<form class="card" method="post" action="{{s['url']}}/notes" enctype="multipart/form-data">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <label>Note <textarea name="text" rows="3" maxlength="10000"></textarea></label>
  <label>On image (SOP Instance UID, empty for the whole study) <input name="image"></label>
  <label>Attachment (PDF, PNG or JPEG) <input type="file" name="file" accept="application/pdf,image/png,image/jpeg"></label>
  <button type="submit">Add note</button>
</form>
% end
