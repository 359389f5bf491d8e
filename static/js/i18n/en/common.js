export default {
  connection: {
    connecting: 'Connecting…',
    live: 'Live',
    reconnecting: 'Reconnecting…',
    polling: 'Offline – checking for updates',
  },
  status: {
    waiting: 'Waiting',
    called: 'Called',
    serving: 'Being served',
    done: 'Done',
    no_show: 'Missed',
    cancelled: 'Cancelled',
    expired: 'Day closed',
  },
  wait: {
    under_a_minute: 'less than a minute',
    minutes: 'about {minutes} min',
  },
  ticket: {
    ahead: {
      zero: 'You are next',
      one: '1 person ahead of you',
      other: '{count} people ahead of you',
    },
    estimate: 'Estimated wait: {wait}',
    go_to: 'Go to {counter}',
    serving: 'Being served at {counter}',
  },
  language: 'Language',
  tenant_not_found: 'This site does not exist.',
  network_error: 'No connection to the server. Please try again.',
};
