export default {
  title: 'Painel',
  now_calling: 'Chamando agora',
  nothing_called: 'Aguardando a primeira chamada',
  last_calls: 'Últimas chamadas',
  column_ticket: 'Senha',
  column_counter: 'Guichê',
  no_recent: 'Ainda não há chamadas anteriores',
  waiting_title: 'Aguardando agora',
  waiting_label: 'aguardando',
  estimated: 'Espera: {wait}',
  no_services: 'Nenhum atendimento aberto no momento',
  // Este painel mostra só as chamadas de alguns atendimentos (?services=A,B): {services} é "A · Geral, B · Exames".
  filter: 'Chamadas de {services}',
  enable_sound: 'Toque para ativar o som',
  sound: {
    on: 'Som ligado',
    off: 'Som desligado',
  },
  // Lido em voz alta: {code} soletrado ("A 0 2 3"), {counter} é o nome do guichê como cadastrado.
  spoken: 'Senha {code}, {counter}',
  spoken_no_counter: 'Senha {code}',
  // Anunciado aos leitores de tela (aria-live) a cada chamada.
  announcement: 'Senha {code}, {counter}',
  announcement_no_counter: 'Senha {code}',
  recent_item: 'Senha {code}, {counter}',
};
