% link = viewer_url(uid)
% if link:
<a class="viewer-link {{get('cls', '')}}" href="{{link}}">Open in viewer</a>
% else:
<span class="viewer-missing" title="run make viewer">viewer not installed</span>
% end
