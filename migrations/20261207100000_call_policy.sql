-- The fair call order of contract §8 (`priority_ratio`), written once here and used by both
-- call-next statements and the next-call preview (the Rust side states it once too:
-- `domain::call_order::Turn`, `streak_after`, `CallOrder::turn_key`).

-- Whether a counter is on a fair turn: after `priority_ratio` priority tickets called to it
-- in a row (its `priority_streak`), its next call-next takes the oldest normal ticket if
-- one waits. A null ratio never gives one: priority tickets always come first.
create function fair_turn(priority_streak integer, priority_ratio integer)
    returns boolean
    language sql immutable parallel safe
    as $$ select coalesce(priority_streak >= priority_ratio, false) $$;

-- The order a counter takes waiting tickets in on its turn: the call order (`call_key`), but
-- on a fair turn with the two classes swapped, so that the oldest normal ticket comes first
-- and priority tickets only after every normal one. Call-next reads its candidates off the
-- waiting index in the call order (the first tickets, and on a fair turn the first normal
-- ones too) and picks among those few by this key: no sort of the queue.
create function turn_key(priority text, created_at timestamptz, fair_turn boolean)
    returns bigint
    language sql immutable parallel safe
    as $$ select call_key(case when not fair_turn then priority
                               when priority = 'normal' then 'priority'
                               else 'normal' end,
                          created_at) $$;

-- A counter's streak after a ticket of this priority is called to it: a priority ticket
-- adds one (up to the largest integer), a normal ticket sets it back to zero.
create function streak_after(priority_streak integer, priority text)
    returns integer
    language sql immutable parallel safe
    as $$ select case when priority = 'priority' then least(priority_streak, 2147483646) + 1
                      else 0 end $$;
