"""Which deliveries a batch may acknowledge with one `multiple=True` frame (services.common.nameko_ext).

AMQP numbers a channel's deliveries 1, 2, 3, ...; `basic.ack(tag, multiple=True)` settles every unsettled one up
to the tag, whatever queue it came from. So one frame is right only when every tag up to the batch's highest is
the batch's own or settled already; anything else would acknowledge a message still being handled (lost if the
service then stops).
"""
from services.common.nameko_ext import _ChannelTags


def tags(low: int = 0, above: set[int] | None = None) -> _ChannelTags:
    t = _ChannelTags(channel=object())
    t.settled(list(range(1, low + 1)))
    if above:
        t.settled(sorted(above))
    return t


def test_the_oldest_deliveries_of_the_channel_go_in_one_frame() -> None:
    assert tags().covers([1, 2, 3])
    assert tags(low=10).covers([11, 12, 13, 14])


def test_a_batch_out_of_order_is_still_the_oldest() -> None:
    assert tags(low=4).covers([7, 5, 6])


def test_a_delivery_still_being_handled_below_the_batch_keeps_the_batch_to_single_acks() -> None:
    # 2 is out (a retry waiting, another lane's batch, another queue's message): acking up to 3 would settle it.
    assert not tags().covers([1, 3])
    assert not tags(low=10).covers([12, 13])


def test_settled_deliveries_fill_the_gaps() -> None:
    assert tags(above={2, 4}).covers([1, 3, 5])
    assert not tags(above={2}).covers([1, 3, 5])  # 4 is out


def test_a_settled_delivery_is_never_acknowledged_again() -> None:
    assert not tags(low=3).covers([3, 4])
    assert not tags(above={5}).covers([1, 2, 3, 4, 5])


def test_the_low_mark_climbs_over_settled_tags_and_keeps_the_rest_apart() -> None:
    t = tags()
    t.settled([2, 3, 5])
    assert (t.low, t.above) == (0, {2, 3, 5})
    t.settled([1])
    assert (t.low, t.above) == (3, {5})
    t.settled([4])
    assert (t.low, t.above) == (5, set())
