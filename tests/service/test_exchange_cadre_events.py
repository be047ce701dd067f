"""Records announces cadres (basic data the exchange sends each term) through the cadre's outbox: entered by hand
or by import, removed (a tombstone, listed nowhere), entered again; the exchange's projection follows."""
from __future__ import annotations

from services.exchange.consumers import apply_cadre_event
from services.exchange.models import Cadre as ProjectedCadre
from shared.events import parse_event
from tests.service.test_exchange_support import sandbox, world  # noqa: F401
from tests.service.test_records_support import TERM, base, client, h, outbox_events, records  # noqa: F401


def relay_to_exchange(model) -> list[str]:
    """Hand every pending cadre event to the exchange's handler, as the bus would; returns their types."""
    sent = outbox_events(model)
    for event in sent:
        apply_cadre_event(*parse_event(event))
    model._get_collection().update_many({}, {"$set": {"outbox": []}})
    return [event["type"] for event in sent]


def test_cadres_entered_removed_and_entered_again_reach_the_exchange(client, world):
    from services.records.models import Cadre

    cadre = {"student_no": "1120001", "term": TERM, "level": "class", "unit": "101", "title": "班長"}
    created = client.post(f"{base()}/cadres", headers=h("affairs"), json=cadre)
    assert created.status_code == 201, created.get_data(as_text=True)
    cadre_id = created.get_json()["id"]
    assert relay_to_exchange(Cadre) == ["records.cadre.recorded.v1"]
    projected = ProjectedCadre.objects(cadre_id=cadre_id).first()
    assert projected.active and projected.title == "班長" and projected.term == TERM
    assert client.post(f"{base()}/cadres", headers=h("affairs"), json=cadre).status_code == 409
    assert client.delete(f"{base()}/cadres/{cadre_id}", headers=h("affairs")).status_code == 204
    assert client.delete(f"{base()}/cadres/{cadre_id}", headers=h("affairs")).status_code == 404
    assert client.get(f"{base()}/cadres", headers=h("affairs")).get_json()["items"] == []
    assert relay_to_exchange(Cadre) == ["records.cadre.removed.v1"]
    assert not ProjectedCadre.objects(cadre_id=cadre_id).first().active
    again = client.post(f"{base()}/cadres", headers=h("admin"), json=cadre)
    assert again.status_code == 201 and again.get_json()["id"] == cadre_id
    assert relay_to_exchange(Cadre) == ["records.cadre.recorded.v1"]
    assert ProjectedCadre.objects(cadre_id=cadre_id).first().active


def test_imported_cadres_are_announced_once(client, world):
    from services.records.models import Cadre

    rows = "學期,學號,幹部層級,單位,職稱\n11201,1120001,班級,101,班長\n11201,1110002,校級,學生會,會長\n".encode("utf-8-sig")
    response = client.post(f"{base()}/imports/cadres?wait=true", data=rows, content_type="text/csv",
                           headers=h("affairs"))
    assert response.status_code == 200 and response.get_json()["report"]["created"] == 2
    assert relay_to_exchange(Cadre) == ["records.cadre.recorded.v1"] * 2
    again = client.post(f"{base()}/imports/cadres?wait=true", data=rows, content_type="text/csv", headers=h("affairs"))
    assert again.get_json()["report"]["unchanged"] == 2 and relay_to_exchange(Cadre) == []
    assert ProjectedCadre.objects(active=True).count() == 2
