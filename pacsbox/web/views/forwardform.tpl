% if can('forward'):
%   targets = forward_to()
%   if targets:
  <form class="inline" method="post" action="{{action}}" id="{{get('form_id', '')}}">
    <input type="hidden" name="csrf_token" value="{{csrf}}">
    <select name="to" aria-label="forward to">
%     for t in targets:
      <option value="{{t}}">{{t}}</option>
%     end
    </select>
    <label><input type="checkbox" name="commit" value="1"> request storage commitment</label>
    <button type="submit">{{get('label', 'Forward')}}</button>
  </form>
%   end
% end
