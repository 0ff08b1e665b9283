% rebase('layout.tpl')
<section class="card narrow">
<h1>Change password</h1>
% if expired:
<p class="warn">Your password has expired or was a one-time password: choose a new one to go on.</p>
% end
% if error:
<p class="error">{{error}}</p>
% end
<form method="post" action="/password">
  <input type="hidden" name="csrf_token" value="{{csrf}}">
  <label>Current password <input name="old" type="password" autocomplete="current-password" required></label>
  <label>New password <input name="new" type="password" autocomplete="new-password" minlength="8" required></label>
  <label>New password again <input name="again" type="password" autocomplete="new-password" minlength="8" required></label>
  <button type="submit">Change</button>
</form>
</section>
