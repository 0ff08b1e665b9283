% rebase('layout.tpl')
<h1>{{modality}} series <small>{{description}}</small></h1>
<p><a href="{{study['url']}}">Back to the study</a> of {{study['patient_name']}}, {{study['study_date']}}.
% if can('modify'):
<a class="button danger" href="/series/{{series_uid}}/delete">Delete series…</a>
% end
</p>
<div class="actions">
% include('forwardform.tpl', action='/series/%s/forward' % series_uid)
% include('printform.tpl', action='/series/%s/print' % series_uid, label='Print ticked images (all when none)')
</div>
<div class="tiles">
% for i in instances:
<a class="tile image-link" href="{{i['url']}}">
  <img src="{{i['image']}}?size=160" alt="image {{i['instance_number']}}" loading="lazy">
% if can('print'):
  <input type="checkbox" name="image" value="{{i['sop_uid']}}" form="print-form" aria-label="print this image">
% end
  <span>#{{i['instance_number'] if i['instance_number'] is not None else ''}} {{i['columns']}}×{{i['rows']}}{{(', %d frames' % i['frames']) if i['frames'] > 1 else ''}}</span>
</a>
% end
</div>
<p>
% if prev_url:
<a class="button" href="{{prev_url}}">Previous page</a>
% end
% if next_url:
<a class="button" href="{{next_url}}">Next page</a>
% end
</p>
