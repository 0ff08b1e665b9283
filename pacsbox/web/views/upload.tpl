% rebase('layout.tpl')
<h1>Upload DICOM files</h1>
<form method="post" action="/upload" enctype="multipart/form-data" class="card">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <label>Part-10 files or ZIPs <input type="file" name="files" multiple required></label>
  <button type="submit">Upload</button>
</form>
% if report:
<p class="flash">{{report['summary']}}</p>
<ul>
% for f in report['rejected']:
<li class="error">{{f['name']}}: {{f['reason']}}</li>
% end
</ul>
% end
