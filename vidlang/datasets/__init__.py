"""Validating readers for the public annotation formats vidlang accepts (see data_manifests/README.md).

Every reader returns frozen dataclass records and raises `vidlang.errors.FormatError(path, entry, message)`
on the first malformed entry, naming the file and the entry (video id, CSV line, ...).
"""

from vidlang.datasets.coin import (COIN_BACKGROUND, CoinStep, CoinVideo, coin_frame_labels, coin_step_vocabulary,
                                   read_coin)
from vidlang.datasets.crosstask import (CrossTaskRelease, CrossTaskSegment, CrossTaskTask, CrossTaskVideo,
                                        crosstask_targets, read_crosstask)
from vidlang.datasets.howto100m import CaptionLine, read_howto100m_captions
from vidlang.datasets.htm_align import HtmAlignSentence, match_asr_times, read_htm_align
from vidlang.datasets.interlink import InterlinkClip, InterlinkVideo, parse_clip_time, read_interlink
from vidlang.datasets.narration import clean_captions
from vidlang.datasets.msrvtt import (MsrvttData, MsrvttMCQuestion, MsrvttPair, MsrvttSentence, MsrvttVideo,
                                     read_msrvtt_data, read_msrvtt_jsfusion, read_msrvtt_mc)
from vidlang.datasets.msrvtt_qa import (MsrvttQA, exact_match_accuracy, most_frequent_answer, normalize_answer,
                                        read_msrvtt_qa)
from vidlang.datasets.youcookii import YouCookSegment, YouCookVideo, read_youcookii

__all__ = [
    "COIN_BACKGROUND", "CaptionLine", "CoinStep", "CoinVideo", "CrossTaskRelease", "CrossTaskSegment",
    "CrossTaskTask", "CrossTaskVideo", "HtmAlignSentence", "InterlinkClip", "InterlinkVideo", "MsrvttData",
    "MsrvttMCQuestion", "MsrvttPair", "MsrvttQA", "MsrvttSentence", "MsrvttVideo", "YouCookSegment", "YouCookVideo",
    "clean_captions", "coin_frame_labels", "coin_step_vocabulary", "crosstask_targets", "exact_match_accuracy",
    "match_asr_times", "most_frequent_answer", "normalize_answer", "parse_clip_time", "read_coin", "read_crosstask",
    "read_howto100m_captions", "read_htm_align", "read_interlink",
    "read_msrvtt_data", "read_msrvtt_jsfusion", "read_msrvtt_mc", "read_msrvtt_qa", "read_youcookii",
]
