% if can('print'):
%   targets = forward_to()
%   if targets:
  <form class="inline" method="post" action="{{action}}" id="print-form">
    <input type="hidden" name="csrf_token" value="{{csrf}}">
    <select name="to" aria-label="printer">
%     for t in targets:
      <option value="{{t}}">{{t}}</option>
%     end
    </select>
    <select name="layout" aria-label="layout">
%     for g in ('1x1', '1x2', '2x2', '2x3', '3x3', '3x4', '4x4', '4x5'):
      <option value="{{g}}">{{g}}</option>
%     end
    </select>
    <select name="film_size" aria-label="film size">
%     for f in film_sizes:
      <option value="{{f}}"{{' selected' if f == '14INX17IN' else ''}}>{{f}}</option>
%     end
    </select>
    <select name="orientation" aria-label="orientation"><option>PORTRAIT</option><option>LANDSCAPE</option></select>
    <label>copies <input name="copies" type="number" min="1" max="99" value="1"></label>
    <button type="submit">{{get('label', 'Print')}}</button>
  </form>
%   end
% end
