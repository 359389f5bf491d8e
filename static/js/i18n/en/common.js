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
  // Signing in (operator console, admin page): the errors and what a refused token means.
  login: {
    submit: 'Sign in',
    signing_in: 'Signing in…',
    invalid_credentials: 'Wrong username or password.',
    session_expired: 'Your session has expired. Please sign in again.',
    token_revoked: 'Your account was changed (by an admin, or a new password). Please sign in again.',
    wrong_tenant: 'This account belongs to another site. Please sign in again.',
    admin_required: 'This page is for administrators. Sign in with an admin account.',
    password_changed: 'Your password was changed, but signing in again failed. Sign in with the new password.',
    failed: 'Could not sign in ({code}). Please try again.',
  },
  language: 'Language',
  tenant_not_found: 'This site does not exist.',
  network_error: 'No connection to the server. Please try again.',
};
