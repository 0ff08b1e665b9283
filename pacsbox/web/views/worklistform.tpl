% rebase('layout.tpl')
<h1>Schedule a procedure</h1>
% if error:
<p class="error" id="order-error">{{error}}</p>
% end
<p class="hint">Pick a patient of the archive by ID (the name, birth date and sex left empty are taken from it) or type a new one. The modality at the station AE gets the procedure in its worklist.</p>
<form method="post" action="/worklist" class="card" id="order-form">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <fieldset><legend>Patient</legend>
  <label>Patient ID <input name="patient_id" list="known-patients" maxlength="64" value="{{values.get('patient_id', '')}}"></label>
  <datalist id="known-patients">
% for pid, name in patients:
    <option value="{{pid}}">{{name}}</option>
% end
  </datalist>
  <label>Name (LAST^FIRST) <input name="patient_name" maxlength="324" value="{{values.get('patient_name', '')}}"></label>
  <label>Birth date <input name="birth_date" placeholder="YYYYMMDD" maxlength="10" value="{{values.get('birth_date', '')}}"></label>
  <label>Sex <select name="sex">
% for s in ('', 'F', 'M', 'O'):
    <option {{'selected' if values.get('sex', '') == s else ''}}>{{s}}</option>
% end
  </select></label>
  </fieldset>
  <fieldset><legend>Procedure</legend>
  <label>Procedure <input name="procedure" maxlength="64" value="{{values.get('procedure', '')}}" placeholder="CT HEAD"></label>
  <label>Accession number <input name="accession" maxlength="16" value="{{values.get('accession', '')}}"></label>
  <label>Referring physician <input name="referring" maxlength="324" value="{{values.get('referring', '')}}"></label>
  <label>Modality <select name="modality" required>
% for m in modalities:
    <option {{'selected' if values.get('modality', '') == m else ''}}>{{m}}</option>
% end
  </select></label>
  <label>Station AE <select name="station_ae" required>
% for t in stations:
    <option {{'selected' if values.get('station_ae', '') == t else ''}}>{{t}}</option>
% end
  </select></label>
  <label>Date <input name="date" type="date" required value="{{values.get('date', '')}}"></label>
  <label>Time <input name="time" type="time" value="{{values.get('time', '')}}"></label>
  </fieldset>
  <button type="submit">Schedule</button>
</form>
