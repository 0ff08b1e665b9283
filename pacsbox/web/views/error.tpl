% rebase('layout.tpl')
<h1>{{title}}</h1>
<p class="error">{{message}}</p>
<p><a href="/studies">Back to the studies</a></p>
