% rebase('layout.tpl')
% i = instance
<h1>Image #{{i['instance_number'] if i['instance_number'] is not None else ''}} <small>{{study['patient_name']}}, {{study['study_date']}}</small></h1>
<div class="viewer">
  <img id="picture" src="{{i['image']}}" alt="rendered image">
  <aside>
    <form method="get" action="{{i['url']}}" class="wl">
      <label>Window center <input name="wc" value="{{wc}}" inputmode="decimal"></label>
      <label>Window width <input name="ww" value="{{ww}}" inputmode="decimal"></label>
      % if i['frames'] > 1:
      <label>Frame (1-{{i['frames']}}) <input name="frame" value="{{frame}}" type="number" min="1" max="{{i['frames']}}"></label>
      % end
      <button type="submit">Apply</button>
      <a href="{{i['url']}}">Reset</a>
    </form>
    <p class="nav">
      % if prev:
      <a class="button" id="prev" href="{{prev}}">◀ Previous</a>
      % end
      % if next:
      <a class="button" id="next" href="{{next}}">Next ▶</a>
      % end
    </p>
    <p><a href="/series/{{series_uid}}">All images of the series</a></p>
    <p>Links: <a href="{{i['png']}}">PNG</a> · <a href="{{i['wado']}}">WADO</a>
    % if can('download'):
    · <a href="{{i['url']}}/file">DICOM file</a>
    % end
    </p>
    % if can('modify'):
    <p><a class="button danger" href="{{i['url']}}/delete">Delete image…</a></p>
    % end
    <p class="uid">{{i['sop_uid']}}</p>
    % for n in notes:
    <p class="note"><span class="meta">{{n['created']}} {{n['author']}}:</span> {{n['text']}}
      % if n['file_url']:
      <a href="{{n['file_url']}}">{{n['file_name']}}</a>
      % end
    </p>
    % end
    % if can('upload'):
    <form method="post" action="{{study['url']}}/notes" enctype="multipart/form-data">
      <input type="hidden" name="csrf_token" value="{{csrf}}">
      <input type="hidden" name="image" value="{{i['sop_uid']}}">
      <label>Note on this image <textarea name="text" rows="2" maxlength="10000"></textarea></label>
      <input type="file" name="file" accept="application/pdf,image/png,image/jpeg" aria-label="attachment">
      <input type="hidden" name="next" value="{{i['url']}}">
      <button type="submit">Add note</button>
    </form>
    % end
  </aside>
</div>
