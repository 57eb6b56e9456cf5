"""Text queries that tune an approximate index: what users type into Search.

CLIP's text embeddings sit in another cone than its image embeddings (the modality gap), so an index tuned
only on queries near stored image vectors misses half the true top 10 of a text query. At build time the
builder has the CLIP model: it encodes these prompts with the index's own text tower, in the model's search
template, and the index is tuned so that both kinds of query reach the target recall
(``ann.build_ann``, ``compressed.tune``). Saved beside the index as ``text_queries.npy`` (float32, one row
each), so that an index rebuilt later from the database is tuned the same way.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

NOUNS = """
cat dog puppy kitten horse cow pig sheep goat chicken duck bird parrot owl eagle penguin fish shark whale
dolphin octopus crab turtle frog snake lizard butterfly bee spider ant snail mouse rabbit squirrel fox wolf
bear panda koala monkey gorilla elephant giraffe zebra lion tiger leopard camel deer kangaroo dinosaur dragon
unicorn tree palm tree flower rose tulip sunflower cactus mushroom leaf grass forest mountain volcano beach
island desert river lake waterfall ocean wave sky cloud rain snow snowman rainbow sun moon star planet comet
fire lightning tornado earth globe map house castle church tower bridge city street road car taxi bus truck
bicycle motorcycle train tram airplane helicopter rocket boat ship sailboat anchor tent campfire fountain
apple banana orange lemon grapes strawberry cherry peach pear pineapple watermelon tomato carrot corn potato
broccoli bread cheese egg pizza hamburger sandwich hot dog taco burrito sushi noodles rice cake cookie donut
ice cream chocolate candy coffee tea milk wine beer cocktail bottle cup glass plate fork knife spoon bowl
chair table bed sofa door window lamp candle clock watch phone computer laptop keyboard television camera
radio guitar piano drum violin trumpet microphone headphones book newspaper pencil pen scissors paperclip
key lock hammer wrench saw axe shield sword bow and arrow gun bomb magnet battery light bulb umbrella
backpack handbag suitcase wallet money coin credit card gift balloon party popper trophy medal crown ring
gem hat cap helmet glasses sunglasses shirt dress jeans sock shoe boot high heel glove scarf tie kimono
bikini ball football basketball baseball tennis golf bowling skiing surfing swimming running dancing
singing sleeping eating cooking reading writing painting climbing fishing heart broken heart kiss smile
laughing face crying face angry face sleepy face surprised face winking face face with tears of joy
thumbs up hand waving hand clapping hands fist pointing finger baby child boy girl man woman old man
old woman family couple police officer firefighter doctor nurse teacher farmer cook astronaut artist
scientist pilot detective ghost skull alien robot clown santa claus angel devil zombie vampire mermaid
fairy genie witch wizard superhero ninja
""".split("\n")
SCENES = (
    "a dog playing in the snow", "a cat sleeping on a sofa", "two cats", "cat and dog", "a red car on a road",
    "a yellow bus", "a bird on a branch", "fish in an aquarium", "a sunset over the sea", "the moon at night",
    "a starry sky", "a city at night", "a birthday cake with candles", "a bowl of fruit", "a cup of coffee",
    "a plate of pasta", "a green tree", "a field of flowers", "a snowy mountain", "a sandy beach with palm trees",
    "a house with a garden", "a rocket launching", "an airplane in the sky", "a train on a bridge",
    "a boat on a lake", "a smiling face", "a crying baby", "a person running", "people dancing",
    "a red heart", "a blue heart", "a black and white photo", "a drawing of an animal", "something cold",
    "something hot", "something you can eat", "something that flies", "a musical instrument", "a sport",
    "a holiday", "a flag", "an office", "a kitchen", "a bedroom", "a school", "a hospital", "a farm animal",
    "a wild animal", "a pet", "a vehicle", "a building", "the weather", "a tool", "clothing", "jewellery",
)


def tuning_prompts() -> list[str]:
    """Several hundred prompts: everyday nouns, people, actions and scenes."""
    nouns = [w for line in NOUNS for w in _phrases(line)]
    return list(dict.fromkeys(nouns + list(SCENES)))


def _phrases(line: str) -> list[str]:
    """A line of the noun list: multi-word nouns are kept whole where listed in MULTI."""
    words, out, i = line.split(), [], 0
    while i < len(words):
        for size in (5, 4, 3, 2):
            if " ".join(words[i:i + size]) in MULTI:
                out.append(" ".join(words[i:i + size]))
                i += size
                break
        else:
            out.append(words[i])
            i += 1
    return out


MULTI = frozenset({
    "palm tree", "hot dog", "ice cream", "light bulb", "credit card", "party popper", "high heel",
    "bow and arrow", "broken heart", "laughing face", "crying face", "angry face", "sleepy face",
    "surprised face", "winking face", "face with tears of joy", "thumbs up", "waving hand", "clapping hands",
    "pointing finger", "old man", "old woman", "police officer", "santa claus",
})

FILE = "text_queries.npy"


def save_text_queries(folder: str | Path, clip) -> np.ndarray:
    """Encode the tuning prompts with `clip`'s text tower in its search template; write them to the index
    folder (atomically) and return them."""
    queries = clip.label_embeddings(tuning_prompts(), (clip.search_template,)).cpu().numpy().astype(np.float32)
    folder = Path(folder)
    tmp = folder / (FILE + ".tmp.npy")
    np.save(tmp, queries)
    os.replace(tmp, folder / FILE)
    return queries


def load_text_queries(folder: str | Path) -> np.ndarray | None:
    path = Path(folder) / FILE
    if not path.exists():
        return None
    try:
        return np.load(path).astype(np.float32)
    except (OSError, ValueError):
        logger.warning("%s cannot be read; the index is tuned on image-like queries only", path, exc_info=True)
        return None
