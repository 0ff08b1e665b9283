<section class="card narrow" id="setup">
<h1>First start</h1>
<p>This box has no administrator password yet.
% if need_code:
To finish the first start, enter the setup code shown on the box's display (the
front panel, or the screen or serial console), then choose a password for the
administrator, <b>root</b>.
% else:
Choose a password for the administrator, <b>root</b>.
% end
The setup code stops working, and leaves the display, once root has a password.</p>
% if setup_error:
<p class="error" id="setup-error">{{setup_error}}</p>
% end
<form method="post" action="/setup">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
% if need_code:
  <label>Setup code <input name="code" id="code" autocomplete="off" autocapitalize="characters" spellcheck="false" placeholder="XXXX-XXXX" maxlength="16" required autofocus></label>
% end
  <label>New password for root <input name="new" id="new" type="password" autocomplete="new-password" minlength="8" required></label>
  <label>New password again <input name="again" id="again" type="password" autocomplete="new-password" minlength="8" required></label>
  <button type="submit" id="set-up">Set root's password</button>
</form>
<p><small>Without the display: <code>pacsbox user passwd root</code> on the box's shell.</small></p>
</section>
