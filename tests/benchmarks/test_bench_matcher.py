"""Benchmark: one segment against a pack of 1,000 phrases, our matcher against a naive scan.

The naive scan (tests/reference/naive_matcher.py) normalises each phrase, tests `in`, and
slides every window for the fuzzy check. Both run in the same test on the same input; the
ratio and our p99 per segment go into `benchmark.extra_info`. No absolute time is asserted.
"""

from __future__ import annotations

import random
import time

import pytest

from qa.rules import Phrase, PhraseMatcher, normalize
from tests.reference.naive_matcher import naive_scan

# Vocabulary of a contact centre; phrases are drawn from it the way packs are written:
# a subject, a verb phrase, an object (English), or two to four words (Chinese).
EN_SUBJECTS = [
    "I",
    "we",
    "you",
    "they",
    "the agent",
    "my manager",
    "our team",
    "the bank",
    "the system",
    "your adviser",
    "the engineer",
    "head office",
]
EN_VERBS = [
    "cannot refund",
    "will check",
    "need to verify",
    "have closed",
    "must update",
    "already sent",
    "can transfer",
    "did not receive",
    "want to cancel",
    "will reverse",
    "should review",
    "never approved",
    "could upgrade",
    "have blocked",
    "will escalate",
    "might waive",
    "already paid",
    "forgot to renew",
    "tried to reset",
    "will post",
    "cannot find",
    "already booked",
    "have suspended",
    "will replace",
    "need to confirm",
]
EN_OBJECTS = [
    "the invoice",
    "your account",
    "the late fee",
    "my card",
    "the payment",
    "the contract",
    "your address",
    "the password",
    "the direct debit",
    "the order",
    "the parcel",
    "the statement",
    "the broadband bill",
    "the mortgage offer",
    "the insurance claim",
    "the roaming charge",
    "the data plan",
    "the router",
    "the appointment",
    "the overdraft limit",
    "the loyalty points",
    "the pin number",
    "the delivery slot",
    "the warranty",
    "the cashback",
    "the meter reading",
    "the standing order",
    "the credit limit",
    "the sim card",
    "the voucher",
]
ZH_WORDS = [
    "发票",
    "账户",
    "滞纳金",
    "银行卡",
    "付款",
    "合同",
    "地址",
    "密码",
    "扣款",
    "订单",
    "包裹",
    "账单",
    "宽带",
    "贷款",
    "保险",
    "理赔",
    "漫游",
    "流量",
    "路由器",
    "预约",
    "透支",
    "积分",
    "验证码",
    "配送",
    "保修",
    "返现",
    "电表",
    "信用",
    "额度",
    "优惠券",
    "退还",
    "核实",
    "验证",
    "关闭",
    "更新",
    "寄出",
    "转接",
    "收到",
    "取消",
    "撤销",
    "审核",
    "批准",
    "升级",
    "冻结",
    "上报",
    "减免",
    "支付",
    "续费",
    "重置",
    "邮寄",
    "查询",
    "预订",
    "暂停",
    "更换",
    "确认",
    "办理",
    "开通",
    "注销",
    "修改",
    "补办",
]
ZH_SUBJECTS = ["我们", "您", "客户", "系统", "银行", "后台", "经理", "工程师", "总部", "专员"]


def _phrases(language: str) -> list[str]:
    rng = random.Random(7)
    out: dict[str, None] = {}
    while len(out) < 1000:
        if language == "en":
            phrase = " ".join(rng.choice(part) for part in (EN_SUBJECTS, EN_VERBS, EN_OBJECTS))
        else:
            words = [rng.choice(ZH_SUBJECTS)] + rng.sample(ZH_WORDS, rng.randint(1, 3))
            phrase = "".join(words)
        out[phrase] = None
    return list(out)


def _segment(language: str, texts: list[str]) -> tuple[str, str]:
    """~20 words: two phrases verbatim, one misheard, the rest ordinary talk."""
    a, b = texts[10], texts[20]
    c = next(t for t in texts[30:] if language != "en" or " the " in t)
    if language == "en":
        misheard = c.replace(" the ", " the the ", 1)  # a repeated word
        return f"okay so {a} last week but {b} and {misheard} today right", c
    misheard = c[:-1] + "哈" + c[-1]  # one extra character inside the phrase
    return (
        f"好的，我上个月打过电话，{a}了，但是{b}，{misheard}，到现在还没有消息，今天可以处理吗",
        c,
    )


@pytest.mark.parametrize("language", ["en", "zh"])
def test_matcher_vs_naive_scan(benchmark, language):
    texts = _phrases(language)
    assert len(texts) == 1000
    phrases = [Phrase(f"p{i}#0", f"p{i}", t) for i, t in enumerate(texts)]
    matcher = PhraseMatcher(phrases, language=language)
    segment, misheard = _segment(language, texts)

    def ours() -> list:
        return matcher.match_normalized(normalize(segment, language))

    hits = benchmark(ours)
    exact = {h.rule_id for h in hits if h.kind == "exact"}
    approximate = {h.rule_id for h in hits if h.kind != "exact"}
    naive_exact, naive_approximate = naive_scan(matcher, segment)
    assert exact == naive_exact and len(exact) >= 2
    # The prefilters lose nothing: the same fuzzy/pinyin hits as aligning every phrase.
    assert approximate == naive_approximate
    # The misheard phrase is found fuzzily.
    assert f"p{texts.index(misheard)}" in approximate

    ours_times = []
    for _ in range(200):
        t0 = time.perf_counter()
        ours()
        ours_times.append(time.perf_counter() - t0)
    naive_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        naive_scan(matcher, segment)
        naive_times.append(time.perf_counter() - t0)
    ours_times.sort()
    median = ours_times[len(ours_times) // 2]
    ratio = min(naive_times) / median
    benchmark.extra_info.update(
        phrases=len(texts),
        segment_chars=len(segment),
        ours_median_ms=round(median * 1e3, 4),
        ours_p99_ms=round(ours_times[int(len(ours_times) * 0.99) - 1] * 1e3, 4),
        naive_ms=round(min(naive_times) * 1e3, 3),
        speedup=round(ratio, 1),
    )
    # Relative only: the automaton plus prefilter must beat the per-phrase scan clearly.
    assert ratio > 5, benchmark.extra_info
