% rebase('layout.tpl')
<h1>Studies</h1>
<form class="search" method="get" action="/studies">
  <label>Patient name <input name="patient_name" id="patient_name" value="{{params.get('patient_name','')}}" placeholder="DOE^J*"></label>
  <label>Patient ID <input name="patient_id" value="{{params.get('patient_id','')}}"></label>
  <label>Study ID <input name="study_id" value="{{params.get('study_id','')}}"></label>
  <label>Accession <input name="accession" value="{{params.get('accession','')}}"></label>
  <label>Description <input name="description" value="{{params.get('description','')}}"></label>
  <label>Study date <input name="study_date" value="{{params.get('study_date','')}}" placeholder="20240101-20241231"></label>
  <label>Study time <input name="study_time" value="{{params.get('study_time','')}}" placeholder="0800-1200"></label>
  <label>Modality <input name="modality" value="{{params.get('modality','')}}" placeholder="CT"></label>
  <label>Series date <input name="series_date" value="{{params.get('series_date','')}}"></label>
  <label>Read <select name="read">
    % for v, label in (('', 'any'), ('no', 'unread'), ('yes', 'read')):
    <option value="{{v}}" {{'selected' if params.get('read','') == v else ''}}>{{label}}</option>
    % end
  </select></label>
  <label>Sort <select name="sort">
    <option value="date_desc">newest first</option>
    <option value="date_asc" {{'selected' if params.get('sort') == 'date_asc' else ''}}>oldest first</option>
  </select></label>
  <button type="submit" id="search">Search</button>
</form>
<p class="hint">Wild cards: <code>*</code> any characters, <code>?</code> one character. Dates as YYYYMMDD, times as HHMM, or a range A-B, -B or A-; several values separated by <code>\</code>. Matching is the same as a workstation's query.</p>
% include('studytable.tpl', studies=studies, selectable=True)
% if studies:
% include('forwardform.tpl', action='/studies/forward', form_id='forward-selected', label='Forward selected')
% end
% if next_url:
<p><a class="button" href="{{next_url}}">Next page</a></p>
% end
