export default {
  connection: {
    connecting: 'Conectando…',
    live: 'Ao vivo',
    reconnecting: 'Reconectando…',
    polling: 'Sem conexão – verificando atualizações',
  },
  status: {
    waiting: 'Aguardando',
    called: 'Chamada',
    serving: 'Em atendimento',
    done: 'Concluída',
    no_show: 'Não compareceu',
    cancelled: 'Cancelada',
    expired: 'Encerrada',
  },
  wait: {
    under_a_minute: 'menos de um minuto',
    minutes: 'cerca de {minutes} min',
  },
  ticket: {
    ahead: {
      zero: 'Sua senha é a próxima',
      one: '1 pessoa na sua frente',
      other: '{count} pessoas na sua frente',
    },
    estimate: 'Tempo estimado de espera: {wait}',
    go_to: 'Dirija-se a: {counter}',
    serving: 'Local de atendimento: {counter}',
  },
  // Local fora do horário de funcionamento (totem, painel). {time} e {day}/{date} são escritos
  // pelo navegador no idioma da página.
  closed: {
    title: 'Fechado',
    opens_today: 'Abre às {time}',
    opens_tomorrow: 'Abre amanhã às {time}',
    opens_weekday: 'Abre {day} às {time}',
    opens_date: 'Abre em {date} às {time}',
  },
  // Entrada (painel do atendente, administração): os erros e o que quer dizer um token recusado.
  login: {
    submit: 'Entrar',
    signing_in: 'Entrando…',
    invalid_credentials: 'Usuário ou senha incorretos.',
    session_expired: 'Sua sessão expirou. Entre novamente.',
    token_revoked: 'Sua conta foi alterada (por um administrador ou por uma nova senha). Entre novamente.',
    wrong_tenant: 'Esta conta pertence a outro local. Entre novamente.',
    admin_required: 'Esta página é para administradores. Entre com uma conta de administrador.',
    password_changed: 'Sua senha foi alterada, mas não foi possível entrar de novo. Entre com a nova senha.',
    failed: 'Não foi possível entrar ({code}). Tente novamente.',
  },
  language: 'Idioma',
  tenant_not_found: 'Este local não existe.',
  network_error: 'Sem conexão com o servidor. Tente novamente.',
};
