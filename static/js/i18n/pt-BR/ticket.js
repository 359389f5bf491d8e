export default {
  page_title: 'nextup – sua senha',
  your_ticket: 'Sua senha',
  loading: 'Carregando sua senha…',
  priority_badge: 'Preferencial',
  called: 'Sua senha foi chamada!',
  finished: {
    done: 'Atendimento concluído. Obrigado!',
    no_show: 'Sua senha foi chamada, mas você não compareceu. Procure um funcionário.',
    cancelled: 'Esta senha foi cancelada.',
    expired: 'O expediente foi encerrado antes de sua senha ser chamada. Retire uma nova senha na próxima visita.',
  },
  keep_open: 'Mantenha esta página aberta: ela se atualiza sozinha e avisa quando sua senha for chamada.',
  sound: {
    enable: 'Ativar aviso sonoro',
    enabled: 'Aviso sonoro ativado',
  },
  title_called: '{code} – chamada: {counter}',
  error: {
    ticket_not_found: 'Senha não encontrada.',
    generic: 'Não foi possível carregar sua senha. Tentando de novo…',
  },
};
