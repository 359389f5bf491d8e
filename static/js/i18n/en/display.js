export default {
  title: 'Display',
  now_calling: 'Now calling',
  nothing_called: 'Waiting for the first call',
  last_calls: 'Last calls',
  column_ticket: 'Ticket',
  column_counter: 'Counter',
  no_recent: 'No earlier calls yet',
  waiting_title: 'Waiting now',
  waiting_label: 'waiting',
  estimated: 'Wait: {wait}',
  no_services: 'No services open at the moment',
  // This screen shows only some services' calls (?services=A,B): {services} is "A · General, B · Exams".
  filter: 'Calls for {services}',
  enable_sound: 'Tap to enable sound',
  sound: {
    on: 'Sound on',
    off: 'Sound off',
  },
  // Read aloud: {code} is spelled out ("A 0 2 3"), {counter} is the counter's name as given.
  spoken: 'Ticket {code}, {counter}',
  spoken_no_counter: 'Ticket {code}',
  // Shown to screen readers (aria-live) for each call.
  announcement: 'Ticket {code}, please go to {counter}',
  announcement_no_counter: 'Ticket {code}',
  recent_item: 'Ticket {code}, {counter}',
};
