"""Sequences of Eclipse Paho's MQTT interoperability suite (client_test5.py and
client_test.py: test_subscribe_options, test_request_response and, as far as
paho-mqtt can leave a delivery unacknowledged, test_redelivery_on_reconnect), driven with the paho-mqtt client from PyPI against
HOST:PORT, with the suite's clean-up first. Prints one line per step; exits 1 on the
first step that fails, saying what was expected and what came.

Where the suite publishes before the second client has its SUBACK (it waits on the
first client's callback, client_test5.py lines 554 and 682), this waits for the SUBACK:
MQTT does not order packets of different connections.

    python3 tests/paho/suite_sequences.py 127.0.0.1 1883
"""
import sys
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST, PORT = sys.argv[1], int(sys.argv[2])
PREFIX = "paho-" + uuid.uuid4().hex[:8] + "/"
TOPICS = [PREFIX + t for t in ["TopicA", "TopicA/B", "Topic/C", "TopicA/C"]]
WILD_TWO_LEVELS = PREFIX + "+/+"
WILD_TOPIC_A = PREFIX + "TopicA/#"


def wait_for(condition, limit=5.0):
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def step(name, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + name + ("" if ok else ": " + detail), flush=True)
    if not ok:
        sys.exit(1)


class Client:
    """A paho-mqtt client whose messages, SUBACKs and connection are waited on."""

    def __init__(self, client_id, version=mqtt.MQTTv5, clean=True, manual_ack=False):
        self.version, self.clean = version, clean
        # MQTT 3.1.1 says clean session when the client is made, MQTT 5 on connect.
        session = {} if version == mqtt.MQTTv5 else {"clean_session": clean}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, manual_ack=manual_ack, **session
        )
        self.messages, self.subacks, self.connacks = [], [], []
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.append(mid)
        self.client.on_connect = lambda c, u, flags, rc, props: self.connacks.append((flags, rc))

    def connect(self, expiry=None):
        if self.version == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            if expiry is not None:
                props.SessionExpiryInterval = expiry
            self.client.connect(HOST, PORT, clean_start=self.clean, properties=props)
        else:
            self.client.connect(HOST, PORT)
        self.client.loop_start()
        if not wait_for(lambda: self.connacks):
            step("CONNACK", False, "none within 5 s")

    def subscribe(self, topic, qos=2, **options):
        before = len(self.subacks)
        if self.version == mqtt.MQTTv5:
            self.client.subscribe(topic, options=SubscribeOptions(qos=qos, **options))
        else:
            self.client.subscribe(topic, qos)
        if not wait_for(lambda: len(self.subacks) > before):
            step("SUBACK " + topic, False, "none within 5 s")

    def publish(self, topic, payload, qos, retain=False, properties=None):
        info = self.client.publish(topic, payload, qos, retain, properties)
        info.wait_for_publish(5)

    def disconnect(self):
        self.client.disconnect()
        self.client.loop_stop()


def clean_up():
    """The suite's clean-up: each client id connected with Clean Start, then every
    retained message under the prefix removed."""
    for client_id in ("myclientid", "myclientid2"):
        c = Client(client_id)
        c.connect()
        c.disconnect()
    c = Client("clean retained")
    c.connect()
    c.subscribe(PREFIX + "#", qos=0)
    time.sleep(0.5)
    for message in c.messages:
        c.publish(message.topic, b"", 0, retain=True)
    c.disconnect()


def subscribe_options():
    a, b = Client("myclientid"), Client("myclientid2")
    # No Local
    a.connect(), b.connect()
    a.subscribe(TOPICS[0], noLocal=True)
    b.subscribe(TOPICS[0], noLocal=True)
    a.publish(TOPICS[0], b"noLocal test", 1)
    step("No Local: the other subscriber gets the message", wait_for(lambda: len(b.messages) == 1), f"{len(b.messages)} messages")
    time.sleep(0.5)
    step("No Local: the publisher does not", a.messages == [], f"{len(a.messages)} messages")
    a.disconnect(), b.disconnect()
    # Retain As Published
    a = Client("myclientid")
    a.connect()
    a.subscribe(TOPICS[0], retainAsPublished=True)
    a.publish(TOPICS[0], b"retain as published false", 1)
    a.publish(TOPICS[0], b"retain as published true", 1, retain=True)
    step("Retain As Published: both delivered", wait_for(lambda: len(a.messages) == 2), f"{len(a.messages)} messages")
    step("Retain As Published: flags as published", [m.retain for m in a.messages] == [False, True], str([m.retain for m in a.messages]))
    a.disconnect()
    # Retain Handling
    a = Client("myclientid")
    a.connect()
    for topic, payload, qos in ((TOPICS[1], b"qos 0", 0), (TOPICS[2], b"qos 1", 1), (TOPICS[3], b"qos 2", 2)):
        a.publish(topic, payload, qos, retain=True)
    a.subscribe(WILD_TWO_LEVELS, retainHandling=1)
    ok = wait_for(lambda: len(a.messages) == 3)
    step("Retain Handling 1, new subscription: 3 retained", ok and sorted(m.qos for m in a.messages) == [0, 1, 2], str([(m.topic, m.qos) for m in a.messages]))
    a.messages.clear()
    a.subscribe(WILD_TWO_LEVELS, retainHandling=1)
    time.sleep(0.5)
    step("Retain Handling 1, existing subscription: none", a.messages == [], f"{len(a.messages)} messages")
    a.disconnect()
    a = Client("myclientid")
    a.connect()
    a.subscribe(WILD_TWO_LEVELS, retainHandling=2)
    a.subscribe(WILD_TWO_LEVELS, retainHandling=2)
    time.sleep(0.5)
    step("Retain Handling 2: none, twice", a.messages == [], f"{len(a.messages)} messages")
    a.disconnect()
    a = Client("myclientid")
    a.connect()
    a.subscribe(WILD_TWO_LEVELS, retainHandling=0)
    ok = wait_for(lambda: len(a.messages) == 3)
    step("Retain Handling 0: 3 retained", ok and sorted(m.qos for m in a.messages) == [0, 1, 2], str([(m.topic, m.qos) for m in a.messages]))
    a.messages.clear()
    a.subscribe(WILD_TWO_LEVELS, retainHandling=0)
    ok = wait_for(lambda: len(a.messages) == 3)
    step("Retain Handling 0, existing subscription: 3 retained again", ok, f"{len(a.messages)} messages")
    a.disconnect()
    clean_up()


def request_response():
    a, b = Client("myclientid"), Client("myclientid2")
    a.connect(), b.connect()
    a.subscribe(TOPICS[0], noLocal=True)
    b.subscribe(TOPICS[0], noLocal=True)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = TOPICS[0]
    props.CorrelationData = b"334"
    a.publish(TOPICS[0], b"request", 1, properties=props)
    step("request reaches the responder", wait_for(lambda: len(b.messages) == 1), f"{len(b.messages)} messages")
    got = b.messages[0].properties
    ok = getattr(got, "ResponseTopic", None) == TOPICS[0] and getattr(got, "CorrelationData", None) == b"334"
    step("request keeps Response Topic and Correlation Data", ok, str(got))
    b.publish(got.ResponseTopic, b"response", 1, properties=got)
    step("response reaches the requester", wait_for(lambda: len(a.messages) == 1), f"{len(a.messages)} messages")
    a.disconnect(), b.disconnect()


def redelivery_on_reconnect(version):
    name = "MQTT 5" if version == mqtt.MQTTv5 else "MQTT 3.1.1"
    b = Client("myclientid2", version, clean=False, manual_ack=True)
    b.connect(expiry=99999)
    b.subscribe(WILD_TOPIC_A, qos=2)
    b.publish(TOPICS[1], b"", 1)
    b.publish(TOPICS[3], b"", 2)
    # Received and never acknowledged (manual_ack).
    wait_for(lambda: len(b.messages) == 2)
    b.disconnect()
    again = Client("myclientid2", version, clean=False)
    again.connect(expiry=99999)
    # paho-mqtt answers a QoS 2 delivery's PUBLISH with PUBREC even with manual_ack, so
    # only the QoS 1 message is unacknowledged: MQTT sends that PUBLISH again (and the
    # QoS 2 one's PUBREL, which paho-mqtt's new client does not wait for).
    ok = wait_for(lambda: any(m.qos == 1 for m in again.messages))
    step(f"{name}: the unacknowledged QoS 1 message is sent again on reconnect", ok, str([(m.topic, m.qos) for m in again.messages]))
    again.disconnect()
    # The session ends.
    end = Client("myclientid2", version)
    end.connect()
    end.disconnect()


clean_up()
subscribe_options()
request_response()
redelivery_on_reconnect(mqtt.MQTTv5)
redelivery_on_reconnect(mqtt.MQTTv311)
print("all steps passed")
