<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} - pacsbox {{get('ae_title', '')}}</title>
<link rel="stylesheet" href="/static/pacsbox.css">
</head>
<body>
<header>
  <a class="brand" href="/studies">pacsbox <small>{{get('ae_title', '')}}</small></a>
  % if me:
  <nav>
    <a href="/studies">Studies</a>
    <a href="/patients">Patients</a>
    <a href="/aes">AE table</a>
    <a href="/worklist">Worklist</a>
    % if can('import'):
    <a href="/upload">Upload</a>
    % end
    <a href="/jobs">Jobs</a>
    % if can('query'):
    <a href="/remote">Remote</a>
    % end
    % if can('monitor'):
    <a href="/status">Status</a>
    % end
    % if can('admin'):
    <a href="/routes">Routes</a>
    <a href="/journal">Journal</a>
    <a href="/config">Configuration</a>
    % end
    % if can('root'):
    <a href="/users">Users</a>
    % end
    <a href="/password">Password</a>
    <form class="inline" method="post" action="/logout">
      <input type="hidden" name="csrf_token" value="{{csrf}}">
      <button type="submit" id="logout">Log out {{me.name}}</button>
    </form>
  </nav>
  % end
</header>
<main>
% if flash:
<p class="flash">{{flash}}</p>
% end
{{!base}}
</main>
</body>
</html>
