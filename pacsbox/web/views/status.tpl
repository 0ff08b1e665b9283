% rebase('layout.tpl')
<h1>Status</h1>
% for a in alerts:
<p class="error">{{a}}</p>
% end
<dl class="facts">
  <dt>State</dt><dd id="state">{{status.get('state')}}</dd>
  <dt>AE title</dt><dd>{{status.get('ae_title')}} port {{status.get('port')}}</dd>
  <dt>Addresses</dt><dd>{{', '.join(status.get('addresses') or [])}}</dd>
  <dt>Associations</dt><dd>{{status.get('associations_active')}}</dd>
  <dt>Studies</dt><dd>{{totals['studies']}} ({{status.get('studies_today')}} today), {{totals['instances']}} images</dd>
  % ls = status.get('last_study') or {}
  <dt>Last study</dt><dd>{{ls.get('received', '-')}} {{ls.get('calling_ae', '')}} {{ls.get('modality', '')}} {{ls.get('description', '')}}</dd>
  % for d in status.get('disk') or []:
  <dt>Disk</dt><dd>{{d['path']}}: {{d['percent']}}% used</dd>
  % end
  % err = status.get('last_error') or {}
  <dt>Last error</dt><dd>{{err.get('time', '')}} {{err.get('message', 'none')}}</dd>
  <dt>Updated</dt><dd>{{status.get('updated')}}</dd>
</dl>
<p><a class="button" href="/status">Refresh</a></p>
