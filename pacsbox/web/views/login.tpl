% rebase('layout.tpl')
% if setup:
% include('setup.tpl')
% end
% if need_code:
<section class="card narrow">
<h1>Log in</h1>
% if error:
<p class="error" id="login-error">{{error}}</p>
% end
<form method="post" action="/login">
  <input type="hidden" name="next" value="{{next}}">
  <label>User <input name="name" id="name" autocomplete="username" required{{'' if setup else ' autofocus'}}></label>
  <label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
  <button type="submit" id="login">Log in</button>
</form>
</section>
% end
