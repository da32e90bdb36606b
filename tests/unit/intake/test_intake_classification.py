"""Classification of real-sounding requests, against the shipped dictionary (services/intake/classification.yml)."""
from __future__ import annotations

import pytest

from services.common.domain import DomainError
from services.intake.adapters.dictionary import load_dictionary
from services.intake.domain.classification import (
    Classification,
    Classifier,
    override_classification,
    validate_classification,
)

ANY = object()  # subclass not asserted: the text does not make it clear

# (text, class, subclass, priority, emergency flag)
TABLE: list[tuple[str, str, object, str, bool]] = [
    # repair: plumbing
    ("3栋1502厨房水管爆了，水漫到客厅", "repair", "plumbing", "urgent", False),
    ("卫生间马桶堵了，冲不下去", "repair", "plumbing", "urgent", False),
    ("厨房水龙头一直滴水，关不紧", "repair", "plumbing", "normal", False),
    ("我家今天一直没水，是不是停水了", "repair", "plumbing", "urgent", False),
    ("阳台地漏反水，一股臭味", "repair", "plumbing", "urgent", False),
    ("洗手盆下面的水管有点渗水，不急，下周有空来看看就行", "repair", "plumbing", "planned", False),
    ("The kitchen tap is leaking, please send someone to fix it", "repair", "plumbing", "normal", False),
    ("A pipe burst in our bathroom and water is everywhere", "repair", "plumbing", "urgent", False),
    ("Toilet is clogged in unit 5-302", "repair", "plumbing", "normal", False),
    # repair: electrical
    ("家里突然停电了，别人家都有电", "repair", "electrical", "urgent", False),
    ("客厅的插座冒烟了，还有烧焦的味道", "repair", "electrical", "emergency", True),
    ("卧室的灯不亮了，麻烦派个电工师傅", "repair", "electrical", "normal", False),
    ("电闸老是跳闸", "repair", "electrical", "urgent", False),
    ("The socket in my bedroom is sparking", "repair", "electrical", "emergency", True),
    ("No power in my flat since this morning", "repair", "electrical", "urgent", False),
    # repair: lift
    ("电梯困人了！", "repair", "lift", "emergency", True),
    ("2栋的电梯坏了，停在8楼不动", "repair", "lift", "urgent", False),
    ("有人被困在电梯里，快来人", "repair", "lift", "emergency", True),
    ("电梯按钮失灵，按了没反应", "repair", "lift", "urgent", False),
    ("The lift is stuck between floors with my kid inside", "repair", "lift", "emergency", True),
    ("The elevator in block 3 is out of order", "repair", "lift", "urgent", False),
    # repair: door / window
    ("单元门的门禁坏了，刷卡打不开", "repair", "door_window", "normal", False),
    ("我家防盗门锁坏了，门关不上", "repair", "door_window", "urgent", False),
    ("卧室窗户玻璃裂了，麻烦换一下", "repair", "door_window", "normal", False),
    ("The window in the living room won't close properly", "repair", "door_window", "normal", False),
    # repair: roof / wall leak
    ("楼上漏水，我家卫生间天花板一直滴水", "repair", "roof_wall_leak", "normal", False),
    ("下雨天外墙渗漏，墙皮都发霉脱落了", "repair", "roof_wall_leak", "urgent", False),
    ("There is a damp patch spreading on the ceiling", "repair", "roof_wall_leak", "normal", False),
    # repair: public facility
    ("小区门口的路灯坏了好几个，晚上很黑", "repair", "public_facility", "normal", False),
    ("儿童乐园的滑梯断了一块，小孩玩很危险", "repair", "public_facility", "urgent", False),
    ("The street light outside block 2 is broken", "repair", "public_facility", "normal", False),
    # repair: gas
    ("厨房有很大的煤气味，怀疑漏气了", "repair", "gas", "emergency", True),
    ("燃气灶打不着火", "repair", "gas", "urgent", False),
    ("I can smell gas in the kitchen", "repair", "gas", "emergency", True),
    # emergency medical
    ("老人在家晕倒了 需要叫120", "emergency_medical", None, "emergency", True),
    ("我爸突然胸口疼，喘不上气，快帮忙叫救护车", "emergency_medical", None, "emergency", True),
    ("小孩从楼梯上摔倒了，头在流血", "emergency_medical", None, "emergency", True),
    ("My neighbour collapsed in the lobby and is unconscious", "emergency_medical", None, "emergency", True),
    ("Please call an ambulance, my husband is having a heart attack", "emergency_medical", None, "emergency", True),
    # complaint
    ("你们保安态度太差了", "complaint", "service_attitude", "normal", False),
    ("前台客服说话很凶，爱理不理的，我要投诉", "complaint", "service_attitude", "normal", False),
    ("报修三天了还没修好，一直拖，太差了", "complaint", "service_quality", "normal", False),
    ("楼道保洁打扫得一点都不干净，投诉", "complaint", "service_quality", "normal", False),
    ("晚上广场舞噪音太大，投诉好几次了没人管", "complaint", "facility", "normal", False),
    ("突然停水也没有通知，太过分了", "complaint", "sudden_event", "urgent", False),
    ("The security guard was really rude to my mother", "complaint", "service_attitude", "normal", False),
    ("I want to file a complaint, nobody came to fix my door after three calls", "complaint", ANY, "normal", False),
    # consultation
    ("物业费怎么交", "consultation", None, "normal", False),
    ("请问装修需要办理什么手续", "consultation", None, "normal", False),
    ("停车月卡多少钱一个月", "consultation", None, "normal", False),
    ("物业办公室周末几点上班", "consultation", None, "normal", False),
    ("How do I pay the management fee?", "consultation", None, "normal", False),
    ("What time does the property office open on Saturday?", "consultation", None, "normal", False),
    # security incidents
    ("我停在楼下的电动车被偷了", "security_incident", "theft", "emergency", True),
    ("地下车库有人打架，快派保安过来", "security_incident", "fight", "emergency", True),
    ("刚才在小区门口被人抢了包", "security_incident", "robbery", "emergency", True),
    ("邻居一家好像食物中毒了，上吐下泻", "security_incident", "poisoning", "emergency", True),
    ("小区门口两辆车追尾了，堵住了出口", "security_incident", "traffic_accident", "emergency", True),
    ("Someone broke into my car in the car park last night", "security_incident", "theft", "emergency", True),
    ("Two men are fighting in the lobby", "security_incident", "fight", "emergency", True),
    # disasters
    ("5栋3楼着火了，好多烟", "disaster", "fire", "emergency", True),
    ("地下车库水浸了，车都被淹了", "disaster", "flood", "emergency", True),
    ("台风把小区的大树刮倒了，挡住了路", "disaster", "typhoon", "urgent", False),
    ("There is smoke coming out of the flat next door, I think it's on fire", "disaster", "fire", "emergency", True),
    ("The basement car park is flooded after the storm", "disaster", "flood", "emergency", True),
    ("Typhoon warning: some balcony flower pots may be blown down", "disaster", "typhoon", "urgent", False),
    # other
    ("我出门了，能帮忙代收一下快递吗", "other", None, "normal", False),
    ("忘带钥匙了，能借个梯子吗", "other", None, "normal", False),
    ("Could you keep a parcel for me at the front desk?", "other", None, "normal", False),
    ("你好", "other", None, "normal", False),
]


@pytest.fixture(scope="module", params=[0, 60000], ids=["full-jieba-dictionary", "bounded-60000-words"])
def classifier(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Classifier:
    """Every case holds with jieba's full dictionary and with the bounded one the service runs with."""
    from services.intake.adapters.dictionary import bounded_segmentation_dictionary
    words = bounded_segmentation_dictionary(request.param, tmp_path_factory.mktemp("jieba"))
    return Classifier(load_dictionary(), words)


def test_the_table_is_big_enough_to_mean_something():
    assert len(TABLE) >= 60
    assert {row[1] for row in TABLE} == {
        "emergency_medical", "repair", "complaint", "consultation", "security_incident", "disaster", "other"}


@pytest.mark.parametrize("text,category,subcategory,priority,emergency", TABLE, ids=[r[0][:30] for r in TABLE])
def test_request_text_gets_the_expected_class_and_priority(classifier, text, category, subcategory, priority,
                                                           emergency):
    result = classifier.classify(text)
    got = (result.category, result.subcategory if subcategory is not ANY else ANY, result.priority, result.emergency)
    assert got == (category, subcategory, priority, emergency), result


def test_every_classified_row_names_the_terms_it_matched_and_a_confidence(classifier):
    for text, category, *_ in TABLE:
        result = classifier.classify(text)
        assert 0.0 <= result.confidence <= 1.0
        if category != "other" or result.matched_terms:
            assert result.matched_terms, text
            assert result.confidence > 0, text


def test_text_with_no_known_words_is_other_with_zero_confidence(classifier):
    result = classifier.classify("嗯嗯好的谢谢")
    assert (result.category, result.confidence, result.matched_terms) == ("other", 0.0, ())


def test_numbers_in_addresses_are_not_read_as_emergency_hotlines(classifier):
    # "1202" contains "120" as characters but not as a word.
    result = classifier.classify("1202室的门锁坏了")
    assert result.category == "repair"
    assert not result.emergency


def test_a_dictionary_term_inside_a_longer_compound_is_not_misread(classifier):
    # "打不着火" contains the characters of 着火 (fire) but is a gas-stove fault.
    result = classifier.classify("煤气灶打不着火")
    assert result.category == "repair"
    assert "着火" not in result.matched_terms


def test_full_width_characters_are_folded(classifier):
    assert classifier.classify("快叫１２０！").category == "emergency_medical"


def test_a_clear_service_attitude_complaint_is_valid(classifier):
    result = classifier.classify("你们保安态度太差了")
    assert result.validity == "valid"
    assert result.complaint_valid is True


@pytest.mark.parametrize("text,validity", [
    ("为什么你们的保洁每天都这么晚才来打扫？", "enquiry"),
    ("垃圾物业，什么破服务，烦死了", "venting"),
    ("投诉一下楼上装修噪音，能不能帮帮我跟他们说一下", "help_seeking"),
])
def test_communicative_complaints_are_told_apart_from_valid_ones(classifier, text, validity):
    result = classifier.classify(text)
    assert result.category == "complaint"
    assert result.validity == validity
    assert result.complaint_valid is False


def test_validity_is_only_given_for_complaints(classifier):
    assert classifier.classify("物业费怎么交").validity is None
    assert classifier.classify("物业费怎么交").complaint_valid is None


def test_no_rush_never_talks_an_urgent_request_down(classifier):
    assert classifier.classify("电梯坏了，不急").priority == "urgent"


def test_jieba_is_not_loaded_until_the_first_classification():
    c = Classifier({"classes": {"repair": {"terms": {"水管": 2}}}})
    assert c._tokenizer is None
    assert c.classify("水管漏了").category == "repair"
    assert c._tokenizer is not None


def test_dictionary_terms_are_segmented_as_words():
    c = Classifier({"classes": {"repair": {"subclasses": {"lift": {"terms": {"梯控卡": 3}}}}}})
    assert "梯控卡" in c.tokenize("我的梯控卡刷不了")
    assert c.classify("我的梯控卡刷不了").subcategory == "lift"


@pytest.mark.parametrize("bad", [
    {},
    {"classes": {"plumbing": {"terms": ["水管"]}}},
    {"classes": {"repair": {"subclasses": {"typhoon": {"terms": ["台风"]}}}}},
    {"classes": {"repair": {"priority": "asap"}}},
    {"classes": {"repair": {}}, "priority_rules": [{"priority": "now", "terms": ["快"]}]},
    {"classes": {"repair": {}}, "complaint_validity": {"angry": ["烦"]}},
])
def test_a_dictionary_outside_the_taxonomy_is_refused_when_the_classifier_is_built(bad):
    with pytest.raises(DomainError):
        Classifier(bad)


def test_agent_override_keeps_its_own_values_and_full_confidence():
    auto = Classification("consultation", None, "normal", False, 0.4, ("怎么",))
    agent = override_classification(auto, category="repair", subcategory="plumbing", priority="urgent")
    assert (agent.category, agent.subcategory, agent.priority, agent.source, agent.confidence) == (
        "repair", "plumbing", "urgent", "agent", 1.0)
    assert agent.validity is None


def test_override_to_complaint_defaults_to_a_valid_complaint():
    auto = Classification("repair", "lift", "urgent", False, 0.8, ("电梯",))
    agent = override_classification(auto, category="complaint", subcategory="service_quality")
    assert agent.complaint_valid is True
    assert agent.priority == "normal"


def test_override_to_emergency_priority_sets_the_fast_path_flag():
    auto = Classification("other", None, "normal", False, 0.0)
    agent = override_classification(auto, category="emergency_medical", priority="emergency")
    assert agent.emergency is True


@pytest.mark.parametrize("kwargs,field", [
    ({"category": "plumbing"}, "category"),
    ({"category": "repair", "subcategory": "typhoon"}, "subcategory"),
    ({"category": "repair", "priority": "asap"}, "priority"),
    ({"category": "repair", "priority": "normal", "emergency": True}, "priority"),
])
def test_override_outside_the_taxonomy_is_refused_naming_the_field(kwargs, field):
    auto = Classification("other", None, "normal", False, 0.0)
    with pytest.raises(DomainError) as err:
        override_classification(auto, **kwargs)
    assert err.value.field == field


def test_validity_on_a_non_complaint_is_refused():
    with pytest.raises(DomainError) as err:
        validate_classification("repair", "plumbing", "normal", "venting")
    assert err.value.field == "validity"
