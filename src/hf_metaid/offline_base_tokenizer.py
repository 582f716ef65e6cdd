"""A small word-level base tokenizer that needs no download.

META ID prompts spell users and items with added ID tokens, so the base vocabulary only has to cover the template
words. This one is built with ``tokenizers`` from a fixed word list (deterministic, a few hundred tokens) and follows
T5's conventions: ``<pad>`` = 0 (also the decoder start), ``</s>`` = 1 appended to every sequence, ``<unk>`` = 2.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")

# Every word of the built-in prompt templates (a test keeps the two in step), plus common prompt vocabulary so
# that users' own templates mostly tokenize without <unk>.
BASE_WORDS = """
a about after again all also an and any are as at based be been before being best bought buy by can choose
consider could customer customers did do does each following for from future given has have he her his history
how i if in interact interacted interaction interactions into is it item items its just know last like liked
likely list may me might most next now of on one or order other our past person please predict preferences
according chosen considering here
previous previously purchase purchased purchases purchasing recommend recommendation recommendations
recommended record records sequence should show suggest suggested that the their them then there these they this
those to top user users was we what which who will with would you your shopping product products prefer
likes enjoyed interest interests profile visited viewed clicked rated review reviewed
""".split()
PUNCTUATION = list(".,:;?!'\"()[]-_/#")
DIGITS = [str(d) for d in range(10)]


def offline_base_vocabulary(extra_words: list[str] | tuple[str, ...] = ()) -> dict[str, int]:
    """Token → id, special tokens first, then words, punctuation and digits, without duplicates."""
    ordered = dict.fromkeys([*SPECIAL_TOKENS, *(w.lower() for w in BASE_WORDS), *PUNCTUATION, *DIGITS])
    for word in extra_words:
        ordered.setdefault(word.lower(), None)
    return {token: index for index, token in enumerate(ordered)}


def build_offline_base_tokenizer(extra_words: list[str] | tuple[str, ...] = ()) -> Tokenizer:
    """The ``tokenizers.Tokenizer`` behind :meth:`MetaIDTokenizer.from_base` with ``base=None``."""
    tokenizer = Tokenizer(WordLevel(offline_base_vocabulary(extra_words), unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces, tidies space before punctuation
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return tokenizer
