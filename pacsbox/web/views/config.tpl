% rebase('layout.tpl')
<h1>Configuration</h1>
<p class="hint">Read from {{source or 'the embedded defaults'}}. Change the INI file and restart the service to change a value.</p>
<div class="scroll"><table class="list">
<thead><tr><th>Section</th><th>Key</th><th>Value</th><th>Meaning</th></tr></thead>
<tbody>
% for s in settings:
<tr><td>{{s['section']}}</td><td><code>{{s['name']}}</code></td><td>{{s['value']}}</td><td>{{s['help']}}</td></tr>
% end
</tbody></table></div>
