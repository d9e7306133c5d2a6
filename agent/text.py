"""Words of a message: tokens with their positions, a light singular/plural stem, and the word lists that are
language, not catalog (function words, conversation words, words that name the kind of thing asked for)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from catalog.text import fold, stem, words  # noqa: F401  (re-exported for the agent's modules)

# Tokens keep digits ("80s", "90s", "4k") and inner apostrophes/ampersands ("don't", "r&b").
_TOKEN = re.compile(r"[a-z0-9]+(?:['’&][a-z0-9]+)*")
_CONTRACTION = re.compile(r"(?:n't|'s|'re|'ve|'ll|'d|'m)$")


@dataclass(frozen=True)
class Token:
    text: str  # lowercased, accents removed
    start: int  # character offsets in the original message
    end: int
    raw: str  # as typed (case kept)


def tokens(text: str) -> list[Token]:
    folded = fold(text)
    if len(folded) != len(text):  # folding changed the length: positions are approximate, keep raw = text
        return [Token(m.group(0), m.start(), m.end(), m.group(0)) for m in _TOKEN.finditer(folded)]
    return [Token(m.group(0), m.start(), m.end(), text[m.start():m.end()]) for m in _TOKEN.finditer(folded)]


def key(phrase_tokens: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The lookup key of a phrase: its tokens, each stemmed."""
    return tuple(stem(t) for t in phrase_tokens)


def base(word: str) -> str:
    """A word without its contraction (aren't -> are, you'd -> you)."""
    return _CONTRACTION.sub("", word) or word


# Words that are language, not catalog: never a constraint, never "unknown".
_FUNCTION = """
actually aren't awesome bit can't cool did didn't does doesn't don't dont fine good great hasn't haven't
hello hey hi i'd i'll i'm i've instead isn't it's just kind let's lets little lot lots maybe nah nice
nope ok okay perfect pls plz pretty quite really shall somebody sort sure thank thanks that's thx today
tonight type wasn't won't wont yeah yep yes you'd you're you've
"""
_CONVERSATION = """
about above add added adding adds affordable again all almost already also although any anybody anyway
approximately around
available because beginner below best best-selling bestselling better between boss both bought boyfriend
brother budget buy care carries carry cheap cheaper cheapest cheers child children choice choices close
closer colleague compare comparison completely cost costing costs count couple dad daughter dear
definitely differ difference different discover dislike each either else enjoy enjoyed enough entirely
every everyone exactly expensive explore family fancy father few fifth find first fit fits fourth friend
friends gear get girl girlfriend give got guess guy had hate have hear heard help helpful hmm hot how
husband idea ideas inexpensive instead item items kid knew know lady last lately latest least less like
liked likes listen listened listening look looking lot love loved luck luxury make makes making man many match matches matching
maybe mean meant mine mom month mood more most mother much mum myself nah near nearly need needed needs
neither new newest next no none nope not number oh ok okay one ones option options order other ours over
own owned partner people perhaps person pick picks piece pieces please plenty popular popularity prefer
preferred premium present previous price priced prices pricier priciest probably product products
purchase purchased quite range rated rating ratings read reading recent recently recommend
recommendation recommendations recommended recommends review reviews right roughly said same say second
see seem seen sell selling sells several show similar since sister so somebody someone something son
still stock stuff suggest suggestion suggestions suit suits tell than thanks them these thing things
think third those though thought today tonight too top totally trending tried try uh um under unless
until usage use used using versus vs want wanted wants watch watched week weekend well whatever
whichever while wife woman wonder wondering worse worst wrong year yes yet yours yourself
"""
# Nouns that name the kind of thing asked for, in many catalogs: never a filter by themselves (a catalog
# whose categories use one of them, like "books", keeps it as a category).
_KINDS = """
accessories accessory act acts album albums anything artist artists band bands brand brands categories
category choice choices device devices film films gadget gadgets gear genre genres group groups item
items kind kinds movie movies music musician musicians one ones option options pick picks product
products recommendation recommendations record records series show shows singer singers something song
songs sort sound sounds stuff style styles suggestion suggestions thing things title titles track tracks
type types
"""
FUNCTION_WORDS = frozenset(ENGLISH_STOP_WORDS) | frozenset(_FUNCTION.split())
CONVERSATION_WORDS = frozenset(_CONVERSATION.split())
KIND_NOUNS = frozenset(_KINDS.split())


# Price words that can also be a catalog's tags ("budget", "premium"): linkable, then read as a price
# unless the wording excludes them ("no premium stuff").
PRICE_WORDS = frozenset({"cheap", "budget", "affordable", "inexpensive", "premium", "luxury", "fancy", "expensive",
                         "pricey", "bargain"})


def is_language(word: str) -> bool:
    """True for words that carry no catalog meaning on their own."""
    w = base(word)
    return word in FUNCTION_WORDS or w in FUNCTION_WORDS or word in CONVERSATION_WORDS or w in CONVERSATION_WORDS
