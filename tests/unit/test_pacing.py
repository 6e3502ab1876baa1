"""The client-side token bucket: burst, refill, server feedback and Retry-After, and its
margin against ARM's own bucket (the emulator's)."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import threading
import time
from collections.abc import Callable

import pytest

from auditor.azure.pipeline import TENANT_SCOPE, pacing_scope
from auditor.pacing import SubscriptionQueue, TokenBucketPacer, throttle_bound_seconds
from auditor.runtime import ARM_BURST_MARGIN
from emulator.throttle import TokenBuckets


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(rate: float = 25.0, burst: int = 250, held: int = 0) -> tuple[TokenBucketPacer, FakeClock]:
    clock = FakeClock()
    pacer = TokenBucketPacer(rate=rate, burst=burst, held=held, clock=clock, sleep=clock.sleep)
    return pacer, clock


def test_burst_is_free_then_reads_are_paced_at_the_refill_rate() -> None:
    pacer, clock = make(rate=25, burst=250)
    for _ in range(250):
        assert pacer.acquire("sub") == 0.0
    assert clock.now == 0.0
    for _ in range(50):
        pacer.acquire("sub")
    # 50 reads beyond the burst at 25 per second take two seconds.
    assert clock.now == pytest.approx(2.0)


def test_subscriptions_have_separate_buckets_and_keys_ignore_case() -> None:
    pacer, _ = make(rate=1, burst=1)
    pacer.acquire("SUB-A")
    assert pacer.reserve("sub-b") == 0.0
    assert pacer.reserve("sub-a") == pytest.approx(1.0)


def test_reservations_queue_in_order() -> None:
    pacer, _ = make(rate=10, burst=1)
    delays = [pacer.reserve("s") for _ in range(4)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_server_reporting_fewer_remaining_reads_lowers_the_estimate() -> None:
    pacer, _ = make(rate=10, burst=100)
    pacer.observe_remaining("s", 0)
    assert pacer.reserve("s") == pytest.approx(0.1)


def test_server_reporting_more_remaining_reads_is_ignored() -> None:
    pacer, _ = make(rate=10, burst=5)
    for _ in range(5):
        pacer.reserve("s")
    pacer.observe_remaining("s", 200)
    assert pacer.reserve("s") == pytest.approx(0.1)


def test_retry_after_pauses_the_subscription() -> None:
    pacer, _ = make(rate=25, burst=250)
    pacer.observe_throttled("s", 7.0)
    assert pacer.reserve("s") == pytest.approx(7.0)
    assert pacer.reserve("other") == 0.0
    assert pacer.stats.throttled == 1


def test_invalid_rates_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucketPacer(rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucketPacer(rate=1, burst=0)


def test_throttle_bound_is_the_slowest_subscription() -> None:
    bound = throttle_bound_seconds({"a": 10_000, "b": 300}, rate=25, burst=250)
    assert bound == pytest.approx((10_000 - 250) / 25)


@pytest.mark.parametrize(
    ("url", "scope"),
    [
        (
            "https://management.azure.com/subscriptions/11111111-1111-1111-1111-11111111111A/"
            "resourceGroups/rg/providers/x?api-version=1",
            "11111111-1111-1111-1111-11111111111a",
        ),
        ("https://management.azure.com/subscriptions?api-version=2016-06-01", TENANT_SCOPE),
        (
            "https://management.azure.com/providers/Microsoft.ResourceGraph/resources?x=/subscriptions/"
            "11111111-1111-1111-1111-111111111111/",
            TENANT_SCOPE,
        ),
    ],
)
def test_pacing_scope_comes_from_the_path(url: str, scope: str) -> None:
    assert pacing_scope(url) == scope


# --------------------------------------------------------------------------- read order


def test_the_subscription_with_a_token_due_now_goes_first_largest_first() -> None:
    due = {"big": 0.0, "small": 0.0}
    items = [("big", f"b{i}") for i in range(5)] + [("small", f"s{i}") for i in range(2)]
    order = SubscriptionQueue(items, lambda k: due[k])
    assert order.next() == "b0"  # both have a token: the larger first
    due["big"] = 0.04  # its budget is spent: the others are read meanwhile
    assert [order.next(), order.next()] == ["s0", "s1"]
    assert order.next() == "b1"  # nothing else left: the soonest due, even if not yet
    due["big"] = 0.0
    assert [order.next() for _ in range(4)] == ["b2", "b3", "b4", None]


def test_when_every_budget_is_spent_the_soonest_due_goes_first() -> None:
    due = {"a": 0.5, "b": 0.1, "c": 0.3}
    order = SubscriptionQueue([(k, k + "1") for k in "abc"], lambda k: due[k])
    assert order.next() == "b1"
    assert len(order) == 2


def test_a_closed_queue_hands_out_nothing() -> None:
    order = SubscriptionQueue([("A", 1), ("a", 2)], lambda k: 0.0)
    assert len(order) == 2  # keys are case-insensitive: one subscription
    order.close()
    assert order.next() is None and len(order) == 0


def test_a_skewed_fleet_keeps_the_large_subscription_busy_from_the_start() -> None:
    """A model run in virtual time: 16 readers, 40 ms per read, ARM's bucket per subscription
    (burst 250, 25/s), one subscription with 2,000 registries and nine with 200. The run
    takes the large subscription's bound plus about one read, not the several seconds a
    round-robin order lost while that subscription's bucket sat full."""
    clock = [0.0]
    pacer = TokenBucketPacer(rate=25.0, burst=250, clock=lambda: clock[0], sleep=lambda s: None)
    fleet = [("big", "big")] * 2000 + [(f"s{i}", f"s{i}") for i in range(9) for _ in range(200)]
    order = SubscriptionQueue(fleet, pacer.due_in)
    free_at = [0.0] * 16  # when each reader is next free
    finished = 0.0
    while (key := order.next()) is not None:
        reader = min(range(16), key=lambda r: free_at[r])
        clock[0] = free_at[reader]
        start = clock[0] + pacer.reserve(key)
        free_at[reader] = start + 0.04
        finished = max(finished, free_at[reader])
    bound = throttle_bound_seconds({"big": 2000}, rate=25.0, burst=250)
    assert bound == 70.0
    assert finished <= bound + 0.1


def _refusals(margin: int, jitter: Callable[[int], float], reads: int = 900) -> int:
    """Reads released on the schedule of a pacer with ARM's rate and `margin` tokens of
    burst in hand, each reaching ARM's own bucket (the emulator's) `jitter(i)` seconds late;
    how many ARM refuses."""
    pacer, _ = make(rate=25.0, burst=250 - margin)
    arrivals = sorted(pacer.reserve("sub") + jitter(i) for i in range(reads))
    now = [0.0]
    server = TokenBuckets(clock=lambda: now[0])
    refused = 0
    for arrival in arrivals:
        now[0] = arrival
        refused += not server.take(("reads", "sub"), 250, 25.0).allowed
    return refused


@pytest.mark.parametrize("seed", range(5))
def test_the_burst_margin_absorbs_arrival_jitter_over_a_whole_run(seed: int) -> None:
    # The margin covers ARM_BURST_MARGIN / 25 s of jitter, however long the run: bunching
    # can only make requests early by the jitter, never accumulate.
    most = ARM_BURST_MARGIN / 25.0
    rng = random.Random(seed)
    assert _refusals(ARM_BURST_MARGIN, lambda i: rng.uniform(0, most)) == 0
    # The worst bunching: the burst arrives as late as it can, the paced reads at once.
    assert _refusals(ARM_BURST_MARGIN, lambda i: most if i < 242 else 0.0) == 0


def test_without_a_burst_margin_jitter_draws_refusals() -> None:
    late = ARM_BURST_MARGIN / 25.0
    assert _refusals(0, lambda i: late if i < 250 else 0.0) > 0


def test_held_tokens_are_spent_once_the_server_has_answered() -> None:
    pacer, clock = make(rate=10, burst=100, held=8)
    first = pacer.now()
    assert [pacer.reserve("s") for _ in range(92)] == [0.0] * 92
    assert pacer.reserve("s") == pytest.approx(0.1)  # the 8 held back, refill from the first
    clock.now = 0.05
    pacer.finished("s", first, counted=True)
    # Counted from the answer: the whole burst less the 93 taken, no refill before it.
    assert [pacer.reserve("s") for _ in range(7)] == [0.0] * 7
    assert pacer.reserve("s") == pytest.approx(0.1)
    assert pacer.reserve("s") == pytest.approx(0.2)


def test_without_an_answer_the_held_tokens_stay_back() -> None:
    pacer, _ = make(rate=10, burst=100, held=8)
    assert sum(pacer.reserve("s") == 0.0 for _ in range(100)) == 92
    pacer.finished("other", pacer.now(), counted=True)  # another subscription's says nothing
    assert pacer.reserve("s") > 0.0


def test_a_full_bucket_holds_back_again_and_older_answers_do_not_count() -> None:
    pacer, clock = make(rate=10, burst=100, held=8)
    old = pacer.now()
    pacer.reserve("s")
    pacer.finished("s", old, counted=True)
    clock.now = 60.0  # refilled: the server's bucket is full again and stops refilling
    assert [pacer.reserve("s") for _ in range(92)] == [0.0] * 92
    pacer.finished("s", old, counted=True)  # sent before it was full: tells nothing of now
    assert pacer.due_in("s") > 0.0
    pacer.finished("s", 60.0, counted=True)
    # The whole burst again, less what was taken since it was full.
    assert [pacer.reserve("s") for _ in range(8)] == [0.0] * 8
    assert pacer.reserve("s") > 0.0


def _paced_run(
    *,
    answers: bool,
    slow: float = 0.02,
    rate: float = 25.0,
    reads: int = 700,
    pause_every: int = 0,
    in_flight: bool = True,
    trickle: int = 0,
) -> tuple[int, float]:
    """A run in virtual time: 32 readers, ARM's bucket (the emulator's, 250 burst), the first
    32 requests `slow` seconds on their way each way (new connections), the rest 10-60 ms.
    Every `pause_every` reads the readers wait 0.5 s (the inventory's next page). The first
    `trickle` reads go out from 4 readers pausing 20 ms after each answer (the inventory's
    own reads, before the settings reads). The pacer hears of every answer when `answers`.
    Returns the refusals and the last send."""
    rng = random.Random(7)
    clock = FakeClock()
    pacer = TokenBucketPacer(rate=rate, burst=250, held=ARM_BURST_MARGIN, clock=clock)
    server_now = [0.0]
    server = TokenBuckets(clock=lambda: server_now[0])
    seq = itertools.count()
    events = [(0.0, next(seq), "free", 0.0) for _ in range(4 if trickle else 32)]
    sent = refused = 0
    last_send = resume = 0.0
    while events:
        at, _, kind, reserved_at = heapq.heappop(events)
        clock.now = at
        if kind == "free" and sent < reads:
            if at < resume:
                heapq.heappush(events, (resume, next(seq), "free", 0.0))
                continue
            sent += 1
            if pause_every and sent % pause_every == 0:
                resume = at + 0.5
            reserved_at = pacer.now()
            send = at + pacer.reserve("sub", in_flight=in_flight)
            last_send = max(last_send, send)
            trip = slow if sent <= 32 else rng.lognormvariate(math.log(0.02), 0.5)
            heapq.heappush(events, (send + trip, next(seq), "arrive", reserved_at))
        elif kind == "arrive":
            server_now[0] = at
            refused += not server.take(("reads", "sub"), 250, rate).allowed
            trip = slow if at < slow * 1.5 else rng.lognormvariate(math.log(0.02), 0.5)
            heapq.heappush(events, (at + trip, next(seq), "answer", reserved_at))
        elif kind == "answer":
            pacer.finished("sub", reserved_at, counted=answers)
            wait = rng.expovariate(50.0) if sent < trickle else 0.0
            heapq.heappush(events, (at + wait, next(seq), "free", 0.0))
            if sent == trickle:  # the settings reads start: every reader
                for _ in range(28):
                    heapq.heappush(events, (at, next(seq), "free", 0.0))
    return refused, last_send


def test_the_refill_counted_from_an_answer_never_outruns_the_server() -> None:
    # New connections take 0.8 s to reach ARM, 2.5 times the delay the held tokens cover:
    # counting the refill from our first request, ARM refuses reads once the burst is spent.
    refused, _ = _paced_run(answers=False, slow=0.8)
    assert refused > 0
    refused, _ = _paced_run(answers=True, slow=0.8)
    assert refused == 0


@pytest.mark.parametrize("rate", [25.0, 250.0])
@pytest.mark.parametrize("pages", [0, 250])
def test_counted_from_answers_arm_refuses_nothing(rate: float, pages: int) -> None:
    # At ARM's rate and ten times it; the inventory's own reads first, from a few readers
    # pausing between them, and pauses for the inventory's next page.
    run = {"answers": True, "rate": rate, "reads": 2000, "trickle": 100, "pause_every": pages}
    refused, _ = _paced_run(**run)
    assert refused == 0


def test_requests_on_their_way_keep_their_tokens_when_the_bucket_refills() -> None:
    pacer, clock = make(rate=10, burst=100, held=8)
    first = pacer.now()
    pacer.reserve("s", in_flight=True)
    pacer.finished("s", first, counted=True)  # counted from here: 99 tokens
    sent = pacer.now()
    for _ in range(3):
        pacer.reserve("s", in_flight=True)  # on their way: ARM may not have counted them yet
    clock.now = 60.0
    # ARM's bucket may be full, and these three will take from it when they arrive: no more
    # than 97 are ours, and the bucket is not full (nothing is held back as if it were).
    assert [pacer.reserve("s") for _ in range(97)] == [0.0] * 97
    assert pacer.due_in("s") > 0.0
    for _ in range(3):
        pacer.finished("s", sent, counted=True)
    clock.now = 120.0
    # Answered, and refilled: now it is full, and holds 8 back until the next answer.
    assert [pacer.reserve("s") for _ in range(92)] == [0.0] * 92
    assert pacer.due_in("s") > 0.0


def test_once_answered_the_held_tokens_are_not_left_unspent() -> None:
    bound = throttle_bound_seconds({"sub": 700}, rate=25.0, burst=250)
    refused, held_to_the_end = _paced_run(answers=False)
    assert refused == 0
    refused, answered = _paced_run(answers=True)
    assert refused == 0
    # The last read goes out once the refill covers the reads beyond the burst, counted from
    # the first answer (about 40 ms in), not 8 tokens (0.32 s) later.
    assert answered <= bound + 0.1
    assert held_to_the_end - answered == pytest.approx(ARM_BURST_MARGIN / 25.0, abs=0.06)


def test_an_item_handed_back_comes_out_after_the_others_then_none() -> None:
    reads = SubscriptionQueue([("s", "a"), ("s", "b"), ("s", "c")], lambda _: 0.0)
    assert reads.next() == "a"
    reads.later("s", "a again", 0.0)
    assert [reads.next(), reads.next(), reads.next(), reads.next()] == [
        "b",
        "c",
        "a again",
        None,
    ]


def test_next_waits_for_an_item_handed_back_and_close_ends_the_wait() -> None:
    reads = SubscriptionQueue([("s", "a")], lambda _: 0.0)
    assert reads.next() == "a"
    reads.later("other", "a again", 0.05)
    assert len(reads) == 1
    assert reads.next() == "a again"  # nothing else to do: the reader waits for it
    assert reads.next() is None
    reads.later("s", "never", 3600.0)
    waiter = threading.Thread(target=lambda: results.append(reads.next()))
    results: list[str | None] = []
    waiter.start()
    reads.close()
    waiter.join(timeout=10)
    assert results == [None] and not waiter.is_alive()


def test_an_open_queue_waits_for_more_items_until_told_there_are_no_more() -> None:
    reads = SubscriptionQueue([("s", "a")], lambda _: 0.0, more=True)
    assert reads.next() == "a"
    results: list[str | None] = []

    def read_two() -> None:
        for _ in range(2):
            results.append(reads.next())

    waiter = threading.Thread(target=read_two, daemon=True)
    waiter.start()
    time.sleep(0.05)
    assert results == [] and waiter.is_alive()  # nothing to read yet, but more may come
    reads.add([("t", "b")])
    time.sleep(0.05)
    assert results == ["b"] and waiter.is_alive()
    assert not reads.complete and reads.added == 2
    reads.no_more()
    waiter.join(timeout=5)
    assert results == ["b", None] and reads.complete


def test_items_added_later_reorder_the_subscriptions_by_all_they_were_given() -> None:
    reads = SubscriptionQueue([("small", "s0"), ("small", "s1")], lambda _: 0.0, more=True)
    reads.add([("big", f"b{i}") for i in range(3)])  # a later page: now the largest
    assert reads.next() == "b0"
    reads.no_more()
    assert [reads.next() for _ in range(5)] == ["b1", "b2", "s0", "s1", None]


def test_nothing_is_added_to_a_closed_queue() -> None:
    reads = SubscriptionQueue([], lambda _: 0.0, more=True)
    reads.close()
    reads.add([("s", "a")])
    assert reads.next() is None and len(reads) == 0
