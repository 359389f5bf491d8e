export default {
  page_title: 'nextup – your ticket',
  your_ticket: 'Your ticket',
  loading: 'Loading your ticket…',
  priority_badge: 'Priority',
  called: 'Your turn!',
  finished: {
    done: 'Service complete. Thank you!',
    no_show: 'Your ticket was called, but you were not there. Please ask the staff.',
    cancelled: 'This ticket was cancelled.',
    expired: 'The day closed before your ticket was called. Please take a new ticket on your next visit.',
  },
  keep_open: 'Keep this page open: it updates by itself and alerts you when you are called.',
  sound: {
    enable: 'Turn on sound alert',
    enabled: 'Sound alert on',
  },
  title_called: '{code}: go to {counter}',
  error: {
    ticket_not_found: 'This ticket was not found.',
    generic: 'Could not load your ticket. Retrying…',
  },
};
