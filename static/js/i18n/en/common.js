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
  // A site outside its opening hours (kiosk, display). {time} and {day}/{date} are written
  // by the browser in the page language.
  closed: {
    title: 'Closed',
    opens_today: 'Opens at {time}',
    opens_tomorrow: 'Opens tomorrow at {time}',
    opens_weekday: 'Opens {day} at {time}',
    opens_date: 'Opens on {date} at {time}',
  },
  language: 'Language',
  tenant_not_found: 'This site does not exist.',
  network_error: 'No connection to the server. Please try again.',
};
