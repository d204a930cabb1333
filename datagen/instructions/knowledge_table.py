"""The curated world-knowledge table behind reasoning instructions (data only; see ``knowledge``).

``CATEGORIES[category] = (kind, noun, [(predicate, also_fits), ...])``:

* ``category``: the catalog's category name (COCO's 80 plus the demo scenes' ``rocket``, ``coin``).
* ``kind``: the noun a description uses ("object", "animal", "food", "vehicle", "person",
  "plant"); it decides how a description reads: "Which animal gives us milk?", "Who can drive a
  car?".
* ``noun``: how the category is named in prompts and replacement choices ("TV", "hair dryer").
* ``predicate``: a subject-relative verb phrase in the third person singular, so that both
  "the {kind} that {predicate}" and "Which {kind} {predicate}?" read right. It never contains the
  category's own name (that would give the answer away).
* ``also_fits``: every *other* category a reasonable reader could take the description to mean
  ("can tell the time": a phone shows the time too). A description is used only when none of
  these is in the image. When in doubt a category is listed: an instruction that names the wrong
  object is worse training data than no instruction.

``REPLACEMENTS[kind]``: nouns an SD edit may put in an object's place ("Replace ... with an
apple"). ``ADDONS[kind]``: things an SD edit may put on an animal or a person ("Add a hat on this
animal"); kinds without an entry get no add-on edits. ``RECOLOR_KINDS``: kinds whose recolour
reads naturally ("Change it into blue"); a person's skin is not recoloured.
"""
from __future__ import annotations

KINDS = ("object", "animal", "food", "vehicle", "person", "plant")

CATEGORIES: dict[str, tuple[str, str, list[tuple[str, tuple[str, ...]]]]] = {
    # ------------------------------------------------------------------ people
    "person": ("person", "person", [
        ("can read and write", ()),
        ("can drive a car", ()),
        ("can hold a conversation", ()),
        ("can cook a meal from a recipe", ()),
    ]),
    # ------------------------------------------------------------------ vehicles
    "bicycle": ("vehicle", "bicycle", [
        ("is moved only by pedalling", ()),
        ("has two wheels and pedals but no engine", ()),
        ("is raced in the Tour de France", ()),
    ]),
    "car": ("vehicle", "car", [
        ("races in Formula One", ()),
        ("has four wheels and usually seats five people", ("truck",)),
        ("has a steering wheel, four doors and a boot", ("truck",)),
    ]),
    "motorcycle": ("vehicle", "motorcycle", [
        ("has two wheels and a petrol engine", ()),
        ("is raced in MotoGP", ()),
        ("is steered with handlebars and needs a helmet and a licence to ride", ("bicycle",)),
    ]),
    "airplane": ("vehicle", "airplane", [
        ("flies passengers across oceans", ()),
        ("takes off from a runway", ()),
        ("has wings and jet engines", ()),
    ]),
    "bus": ("vehicle", "bus", [
        ("stops at roadside shelters to pick up passengers", ()),
        ("can have two decks in London", ()),
        ("carries dozens of passengers along a road with one driver", ("train",)),
    ]),
    "train": ("vehicle", "train", [
        ("runs on rails", ()),
        ("stops at railway stations", ()),
        ("has a locomotive pulling carriages", ()),
    ]),
    "truck": ("vehicle", "truck", [
        ("carries heavy cargo along highways", ()),
        ("delivers goods from warehouses to shops", ()),
        ("has a large cargo bed or trailer", ()),
    ]),
    "boat": ("vehicle", "boat", [
        ("sails on lakes and seas", ("surfboard",)),
        ("is moved by oars or sails", ()),
        ("is tied up in a harbour", ()),
    ]),
    "rocket": ("vehicle", "rocket", [
        ("can fly into space", ()),
        ("carries astronauts to the moon", ()),
        ("launches from a pad after a countdown", ()),
    ]),
    # ------------------------------------------------------------------ street objects
    "traffic light": ("object", "traffic light", [
        ("shows red, amber and green lights to drivers", ()),
        ("controls the traffic at a crossroads", ("stop sign",)),
        ("gives people warning", ("stop sign",)),
    ]),
    "fire hydrant": ("object", "fire hydrant", [
        ("supplies water to firefighters' hoses", ()),
        ("stands on the pavement holding water for fighting fires", ()),
    ]),
    "stop sign": ("object", "stop sign", [
        ("is a red octagon", ()),
        ("has the word STOP written on it", ()),
        ("tells drivers to halt at a junction", ("traffic light",)),
    ]),
    "parking meter": ("object", "parking meter", [
        ("takes coins to pay for parking a car", ()),
        ("shows how much parking time is left", ()),
    ]),
    "bench": ("object", "bench", [
        ("stands in parks for people to rest on", ()),
        ("seats several people side by side in a park", ("couch",)),
    ]),
    # ------------------------------------------------------------------ animals
    "bird": ("animal", "bird", [
        ("has feathers", ()),
        ("lays eggs in a nest", ()),
        ("can fly", ()),
    ]),
    "cat": ("animal", "cat", [
        ("purrs", ()),
        ("meows", ()),
        ("is said to have nine lives", ()),
        ("catches mice", ("dog",)),
    ]),
    "dog": ("animal", "dog", [
        ("barks", ()),
        ("is known as man's best friend", ()),
        ("wags its tail when it is happy", ()),
        ("can be trained to guide blind people", ("horse",)),
    ]),
    "horse": ("animal", "horse", [
        ("neighs", ()),
        ("can be ridden", ("elephant",)),
        ("pulls carriages", ("cow",)),
        ("gallops in the Kentucky Derby", ()),
    ]),
    "sheep": ("animal", "sheep", [
        ("gives us wool", ()),
        ("bleats", ()),
        ("is counted by people who cannot fall asleep", ()),
    ]),
    "cow": ("animal", "cow", [
        ("gives us milk", ("sheep",)),
        ("moos", ()),
        ("is the source of beef", ()),
    ]),
    "elephant": ("animal", "elephant", [
        ("has a trunk", ()),
        ("is the largest land animal", ()),
        ("has ivory tusks", ()),
    ]),
    "bear": ("animal", "bear", [
        ("hibernates through the winter", ()),
        ("loves honey", ()),
        ("catches salmon in rivers", ("bird",)),
    ]),
    "zebra": ("animal", "zebra", [
        ("has a black and white striped coat", ()),
        ("is famous for its stripes", ()),
    ]),
    "giraffe": ("animal", "giraffe", [
        ("has the longest neck", ()),
        ("is the tallest animal", ()),
        ("eats leaves from the tops of acacia trees", ("elephant",)),
    ]),
    # ------------------------------------------------------------------ accessories
    "backpack": ("object", "backpack", [
        ("is carried on the back with two shoulder straps", ()),
        ("carries a hiker's things on the trail", ("suitcase",)),
        ("carries schoolbooks to school", ("handbag",)),
    ]),
    "umbrella": ("object", "umbrella", [
        ("can help people prevent sunburn", ()),
        ("keeps people dry in the rain", ()),
        ("folds up and opens over your head", ()),
    ]),
    "handbag": ("object", "handbag", [
        ("is also called a purse", ()),
        ("is a fashion accessory for carrying a wallet and keys", ("backpack",)),
    ]),
    "tie": ("object", "tie", [
        ("is knotted around a shirt collar", ()),
        ("is worn with a suit for formal occasions", ()),
    ]),
    "suitcase": ("object", "suitcase", [
        ("is rolled through airports on wheels", ()),
        ("holds clothes when travelling", ("backpack", "handbag")),
        ("is checked in at the airport", ("backpack",)),
    ]),
    # ------------------------------------------------------------------ sports
    "frisbee": ("object", "frisbee", [
        ("is a flying disc thrown between friends", ()),
        ("is thrown for dogs to catch in mid-air", ("sports ball",)),
    ]),
    "skis": ("object", "skis", [
        ("is worn in pairs, one on each foot, to slide on snow", ()),
        ("is used in slalom races", ("snowboard",)),
        ("lets people glide down snowy slopes", ("snowboard",)),
    ]),
    "snowboard": ("object", "snowboard", [
        ("is a single board for riding down snowy slopes", ()),
        ("is like a skateboard for snow", ("skateboard",)),
    ]),
    "sports ball": ("object", "ball", [
        ("is kicked or thrown in team games", ()),
        ("is round and bounces", ()),
        ("is dribbled in basketball", ()),
    ]),
    "kite": ("object", "kite", [
        ("flies on a string on windy days", ()),
        ("is flown at the beach when the wind blows", ()),
    ]),
    "baseball bat": ("object", "baseball bat", [
        ("is swung to hit a pitch", ("tennis racket",)),
        ("is a long wooden club used in baseball", ()),
    ]),
    "baseball glove": ("object", "baseball glove", [
        ("is a leather mitt worn by fielders", ()),
        ("catches the ball in baseball", ()),
    ]),
    "skateboard": ("object", "skateboard", [
        ("has four small wheels and is ridden standing up", ()),
        ("is ridden in a skate park", ("bicycle",)),
        ("is used for tricks like the ollie", ("snowboard",)),
    ]),
    "surfboard": ("object", "surfboard", [
        ("rides ocean waves", ("boat",)),
        ("is what a surfer stands on", ()),
    ]),
    "tennis racket": ("object", "tennis racket", [
        ("has strings and hits a tennis ball", ()),
        ("is used at Wimbledon", ("sports ball",)),
    ]),
    # ------------------------------------------------------------------ kitchen
    "bottle": ("object", "bottle", [
        ("holds water and has a screw cap", ()),
        ("stores wine until it is poured", ()),
        ("can carry a message across the sea", ()),
    ]),
    "wine glass": ("object", "wine glass", [
        ("has a stem and is used to drink wine", ()),
        ("is raised for a toast", ("cup", "bottle")),
    ]),
    "cup": ("object", "cup", [
        ("holds hot coffee or tea", ()),
        ("has a handle and is used for drinking", ()),
        ("sits on a saucer", ()),
    ]),
    "fork": ("object", "fork", [
        ("can be used to eat the cake", ("spoon",)),
        ("has prongs for picking up food", ()),
        ("is the utensil used to twirl spaghetti", ("spoon",)),
    ]),
    "knife": ("object", "knife", [
        ("cuts bread", ()),
        ("has a sharp blade for cutting food", ()),
        ("spreads butter on toast", ("spoon",)),
    ]),
    "spoon": ("object", "spoon", [
        ("stirs sugar into tea", ()),
        ("is used to eat soup", ("bowl",)),
    ]),
    "bowl": ("object", "bowl", [
        ("holds soup or cereal", ("cup",)),
        ("is a round open dish for salad", ()),
    ]),
    # ------------------------------------------------------------------ food
    "banana": ("food", "banana", [
        ("is yellow and curved", ()),
        ("is a monkey's favourite fruit", ()),
        ("is rich in potassium", ()),
    ]),
    "apple": ("food", "apple", [
        ("keeps the doctor away when eaten every day", ()),
        ("fell on Newton's head", ()),
        ("is pressed to make cider", ()),
    ]),
    "sandwich": ("food", "sandwich", [
        ("is named after an English earl", ()),
        ("has a filling between two slices of bread", ("hot dog",)),
    ]),
    "orange": ("food", "orange", [
        ("has the most vitamin C", ("broccoli",)),
        ("is a citrus fruit peeled into segments", ()),
        ("is squeezed to make breakfast juice", ("apple",)),
    ]),
    "broccoli": ("food", "broccoli", [
        ("looks like a tiny green tree", ()),
        ("is a green vegetable with florets", ()),
    ]),
    "carrot": ("food", "carrot", [
        ("is a rabbit's favourite snack", ()),
        ("is an orange root vegetable", ()),
        ("is said to help you see in the dark", ()),
    ]),
    "hot dog": ("food", "hot dog", [
        ("is a sausage in a bun", ()),
        ("is sold at baseball games with mustard", ()),
    ]),
    "pizza": ("food", "pizza", [
        ("comes from Naples with tomato and mozzarella", ()),
        ("is delivered in a flat cardboard box", ()),
    ]),
    "donut": ("food", "donut", [
        ("has a hole in the middle", ()),
        ("is a fried ring of dough with glaze", ()),
        ("is the snack police officers are joked to love", ()),
    ]),
    "cake": ("food", "cake", [
        ("has candles on it at birthday parties", ()),
        ("is served in tiers at weddings", ()),
    ]),
    # ------------------------------------------------------------------ furniture
    "chair": ("object", "chair", [
        ("has four legs and a backrest for one person to sit on", ()),
        ("is pulled up to a desk", ()),
    ]),
    "couch": ("object", "couch", [
        ("is also called a sofa", ()),
        ("lets a family sit together in front of the TV", ("bench",)),
    ]),
    "potted plant": ("plant", "potted plant", [
        ("grows in a pot and needs watering", ()),
        ("turns sunlight into oxygen on a windowsill", ()),
    ]),
    "bed": ("object", "bed", [
        ("has a mattress and pillows", ()),
        ("is where people sleep at night", ("couch",)),
    ]),
    "dining table": ("object", "dining table", [
        ("is where a family eats dinner", ()),
        ("has plates and cutlery laid on it for a meal", ()),
    ]),
    "toilet": ("object", "toilet", [
        ("is flushed after use", ()),
        ("has a seat, a lid and a flush", ()),
    ]),
    # ------------------------------------------------------------------ electronics
    "tv": ("object", "TV", [
        ("is watched from the sofa with a remote control", ()),
        ("broadcasts the evening news", ("laptop", "cell phone")),
    ]),
    "laptop": ("object", "laptop", [
        ("is a portable computer that folds shut", ()),
        ("is a folding computer with a built-in keyboard and screen", ()),
    ]),
    "mouse": ("object", "computer mouse", [
        ("moves the cursor on a computer screen", ("laptop",)),
        ("is clicked to select things on a computer", ("laptop", "keyboard")),
    ]),
    "remote": ("object", "remote control", [
        ("changes the TV channel from the sofa", ()),
        ("is pointed at the television to switch it on", ()),
    ]),
    "keyboard": ("object", "keyboard", [
        ("has keys for typing letters into a computer", ("laptop",)),
        ("has a QWERTY layout", ("laptop", "cell phone")),
    ]),
    "cell phone": ("object", "cell phone", [
        ("can make calls and send text messages", ()),
        ("fits in a pocket and takes photos", ()),
    ]),
    # ------------------------------------------------------------------ appliances
    "microwave": ("object", "microwave", [
        ("heats food quickly with invisible waves", ()),
        ("pops popcorn in a few minutes", ()),
    ]),
    "oven": ("object", "oven", [
        ("bakes bread and cakes", ()),
        ("roasts the turkey at Christmas", ()),
    ]),
    "toaster": ("object", "toaster", [
        ("browns slices of bread and pops them up", ()),
        ("makes toast for breakfast", ("oven",)),
    ]),
    "sink": ("object", "sink", [
        ("is where you wash the dishes", ()),
        ("has a tap and a drain", ()),
    ]),
    "refrigerator": ("object", "refrigerator", [
        ("keeps food cold", ()),
        ("has magnets stuck on its door", ()),
    ]),
    # ------------------------------------------------------------------ indoor objects
    "book": ("object", "book", [
        ("has pages to read", ()),
        ("is borrowed from a library", ()),
    ]),
    "clock": ("object", "clock", [
        ("can tell the time", ("cell phone",)),
        ("has an hour hand and a minute hand", ()),
        ("ticks on the wall", ()),
    ]),
    "vase": ("object", "vase", [
        ("holds cut flowers", ()),
        ("is filled with water for a bouquet", ()),
    ]),
    "scissors": ("object", "scissors", [
        ("has two blades joined in the middle", ()),
        ("cuts paper", ("knife",)),
    ]),
    "teddy bear": ("object", "teddy bear", [
        ("is cuddled by children at bedtime", ()),
        ("is a stuffed toy named after Theodore Roosevelt", ()),
    ]),
    "hair drier": ("object", "hair dryer", [
        ("blows hot air to dry wet hair", ()),
        ("is switched on after washing your hair", ()),
    ]),
    "toothbrush": ("object", "toothbrush", [
        ("cleans teeth", ()),
        ("is used twice a day with toothpaste", ()),
    ]),
    "coin": ("object", "coin", [
        ("is used as pocket change", ()),
        ("is tossed to decide heads or tails", ()),
        ("is dropped into a piggy bank", ()),
    ]),
}

# Replacement nouns for SD "replace" edits, by the kind of the object replaced.
REPLACEMENTS: dict[str, tuple[str, ...]] = {
    "object": ("teapot", "lamp", "globe", "vase of flowers", "alarm clock", "cactus in a pot"),
    "animal": ("rabbit", "dog", "cat", "fox", "panda", "lion", "pig"),
    "food": ("apple", "orange", "banana", "strawberry", "pineapple", "lemon"),
    "vehicle": ("bicycle", "car", "boat", "tractor", "hot air balloon"),
    "person": ("statue", "robot", "snowman", "scarecrow"),
    "plant": ("cactus", "sunflower", "bonsai tree"),
}

# What SD "addon" edits put on an animal or a person ("Add a hat on this animal").
ADDONS: dict[str, tuple[str, ...]] = {
    "animal": ("hat", "scarf", "bow tie", "crown"),
    "person": ("hat", "scarf", "crown", "pair of sunglasses"),
}

RECOLOR_KINDS = ("object", "vehicle", "food", "animal", "plant")

# Target colours of recolour edits: the basic colour terms a hue shift can reach (``colors``
# names black / white / gray / brown by value and saturation, which a hue change cannot make).
RECOLOR_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink")

# Other names datasets use for the same categories (Pascal VOC, Objects365-style spellings).
ALIASES: dict[str, str] = {
    "aeroplane": "airplane", "motorbike": "motorcycle", "sofa": "couch", "tvmonitor": "tv",
    "television": "tv", "diningtable": "dining table",
    "pottedplant": "potted plant", "hair dryer": "hair drier", "cellphone": "cell phone",
    "mobile phone": "cell phone", "doughnut": "donut", "ball": "sports ball", "people": "person",
    "man": "person", "woman": "person", "fridge": "refrigerator", "mug": "cup",
}
