"""The unCLIP endpoints on a launched app with a tiny random prior and decoder, called as a script would."""
import pytest

from tests.conftest import EXAMPLES
from tests.launched import app_client
from tests.test_unclip import make_unclip_models

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from demo_core.engine import Engine

    prior, decoder = make_unclip_models(tmp_path_factory.mktemp("unclip-app"))
    with app_client(Engine("mini-clip", "cpu", unclip_prior=prior, unclip_decoder=decoder)) as c:
        yield c


def test_prompt_alone_goes_through_prior_nearest_images_and_decoder(client):
    images, emb, x_t, status, cos, nearest = client.predict("a red heart", api_name="/unclip")  # all else defaulted
    assert len(images) == 4 and all(im["image"] for im in images)
    assert all("cos" in im["caption"] for im in images)
    assert "done" in status and "step 50 of 50" in status
    assert "cos(text embedding, prior's image embedding)" in cos
    assert len(nearest) == 6 and nearest[0]["caption"].split(" · ")[0].endswith((".png", ".jpg"))
    assert {row[2] for row in emb["data"]} == {"text embedding", "prior's image embedding (image 1)"}


def test_variations_of_an_uploaded_picture(client):
    from gradio_client import handle_file

    images, _, _, status = client.predict(handle_file(str(EXAMPLES / "cat.png")), api_name="/variations")
    assert len(images) == 4 and "done" in status
    assert [im["caption"].split(" · ")[0] for im in images] == ["variation 1", "variation 2", "variation 3",
                                                              "variation 4"]


def test_two_pictures_interpolate(client):
    from gradio_client import handle_file

    strip, _, _, status = client.predict(handle_file(str(EXAMPLES / "cat.png")), handle_file(str(EXAMPLES / "dog.png")),
                                         "", 3, 0, 3.0, 5, api_name="/interpolate")
    assert [im["caption"].split(" · ")[0] for im in strip] == ["u 0.00", "u 0.50", "u 1.00"]
    assert all(" · A " in im["caption"] and " · B " in im["caption"] for im in strip)


def test_why_a_prior_decodes_both_from_one_seed(client):
    with_prior, without, status = client.predict("a yellow face", 0, 3.0, 5, api_name="/unclip_compare")
    assert len(with_prior) == 4 and len(without) == 4 and "done" in status


@pytest.mark.parametrize("name,payload,msg", [
    ("not-an-image.png", b"hello, not an image", "not an image"),
    ("cut.png", (EXAMPLES / "cat.png").read_bytes()[:3000], "damaged or incomplete"),
])
def test_a_bad_picture_gets_a_plain_message(client, tmp_path, name, payload, msg):
    from gradio_client import handle_file

    bad = tmp_path / name
    bad.write_bytes(payload)
    with pytest.raises(Exception) as e:
        client.predict(handle_file(str(bad)), api_name="/variations")
    assert msg in str(e.value) and "Traceback" not in str(e.value)


def test_no_picture_gets_a_plain_message(client):
    with pytest.raises(Exception, match="No image given"):
        client.predict(None, api_name="/variations")
