export default {
  page_title: 'nextup',
  tagline: 'Gestão de filas: totem, painel e página do atendente para cada local.',
  sites: 'Locais',
  loading: 'Carregando…',
  pages: {
    totem: 'Totem',
    display: 'Painel',
    operator: 'Atendente',
    admin: 'Administração',
  },
  pages_hint: {
    totem: 'retirar senha',
    display: 'tela pública',
    operator: 'chamar senhas',
    admin: 'configurações e relatórios',
  },
  howto: {
    title: 'Nenhum local cadastrado',
    intro: 'Crie um local (tenant) e o primeiro administrador pela linha de comando:',
    password: 'O segundo comando lê a senha do administrador da entrada padrão (digite-a e tecle Enter).',
    demo: 'Ou inicie o servidor com um local de demonstração pronto:',
    after: 'Depois, recarregue esta página.',
  },
  error: 'Não foi possível carregar a lista de locais.',
  retry: 'Tentar de novo',
};
