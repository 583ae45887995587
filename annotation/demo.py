"""Demo data for `make run`: ~30 images drawn with Pillow, questions over all 13 tasks, rewrites,
two dialogues, and one login per role. Idempotent: everything is keyed on a natural key, and the
images are drawn deterministically so their content hashes repeat."""

from __future__ import annotations

import io
import os
import random
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from .images import ingest_image
from .models import Dataset, Image, Question
from .roles import ANNOTATOR, CURATOR, RESEARCHER

DEMO_DATASET = "demo"
CJK_FONT_CANDIDATES = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
]


def find_cjk_font() -> str | None:
    for path in CJK_FONT_CANDIDATES:
        if os.path.exists(path):
            return path
    return None


@dataclass
class Fonts:
    cjk: bool
    path: str | None

    def get(self, size: int) -> ImageFont.ImageFont:
        if self.path:
            return ImageFont.truetype(self.path, size)
        return ImageFont.load_default(size=size)

    def text(self, zh: str, en: str) -> str:
        # Without a CJK font Pillow draws boxes for Chinese; fall back to English cleanly.
        return zh if self.cjk else en


def _canvas(rng: random.Random, size=(640, 420)) -> tuple[PILImage.Image, ImageDraw.ImageDraw]:
    image = PILImage.new("RGB", size, tuple(rng.randint(215, 250) for _ in range(3)))
    return image, ImageDraw.Draw(image)


def draw_meme(rng: random.Random, fonts: Fonts, top: tuple[str, str], bottom: tuple[str, str]) -> PILImage.Image:
    image, draw = _canvas(rng)
    draw.rectangle((0, 0, 319, 419), fill=(180, 210, 245))
    draw.rectangle((320, 0, 639, 419), fill=(245, 200, 180))
    draw.ellipse((110, 140, 210, 240), fill=(250, 220, 90), outline=(0, 0, 0), width=3)
    draw.rectangle((420, 150, 540, 260), fill=(120, 120, 120), outline=(0, 0, 0), width=3)
    font = fonts.get(30)
    draw.text((20, 20), fonts.text(*top), font=font, fill=(0, 0, 0))
    draw.text((340, 20), fonts.text(*bottom), font=font, fill=(0, 0, 0))
    draw.text((20, 370), fonts.text("理想", "Ideal"), font=font, fill=(30, 30, 120))
    draw.text((340, 370), fonts.text("现实", "Reality"), font=font, fill=(120, 30, 30))
    return image


def draw_ocr(rng: random.Random, fonts: Fonts, lines: list[tuple[str, str]]) -> PILImage.Image:
    image, draw = _canvas(rng, (560, 420))
    draw.rectangle((30, 30, 530, 390), fill=(255, 255, 250), outline=(60, 60, 60), width=2)
    font = fonts.get(26)
    for i, line in enumerate(lines):
        draw.text((55, 55 + i * 52), fonts.text(*line), font=font, fill=(20, 20, 20))
    return image


def draw_chart(rng: random.Random, fonts: Fonts, title: tuple[str, str], labels: list[tuple[str, str]],
               values: list[int]) -> PILImage.Image:
    image, draw = _canvas(rng, (640, 440))
    draw.text((30, 15), fonts.text(*title), font=fonts.get(26), fill=(0, 0, 0))
    draw.line((60, 390, 610, 390), fill=(0, 0, 0), width=2)
    draw.line((60, 70, 60, 390), fill=(0, 0, 0), width=2)
    top = max(values)
    width = 500 // len(values)
    small = fonts.get(18)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = 80 + i * width
        h = int(300 * value / top)
        draw.rectangle((x, 390 - h, x + width - 25, 390), fill=(70, 110, 220))
        draw.text((x, 370 - h), str(value), font=small, fill=(0, 0, 0))
        draw.text((x, 398), fonts.text(*label), font=small, fill=(0, 0, 0))
    return image


def draw_objects(rng: random.Random, fonts: Fonts, count: int, shape: str, colour: tuple[int, int, int]) -> PILImage.Image:
    image, draw = _canvas(rng)
    placed = 0
    while placed < count:
        x, y = rng.randint(20, 560), rng.randint(20, 340)
        box = (x, y, x + 50, y + 50)
        if shape == "circle":
            draw.ellipse(box, fill=colour, outline=(0, 0, 0))
        else:
            draw.rectangle(box, fill=colour, outline=(0, 0, 0))
        placed += 1
    return image


def draw_scene(rng: random.Random, fonts: Fonts, caption: tuple[str, str]) -> PILImage.Image:
    image, draw = _canvas(rng)
    draw.rectangle((0, 260, 640, 420), fill=(110, 170, 90))  # grass
    draw.ellipse((480, 30, 580, 130), fill=(250, 210, 60))  # sun
    draw.polygon([(120, 260), (220, 150), (320, 260)], fill=(150, 80, 60))  # roof
    draw.rectangle((140, 260, 300, 360), fill=(230, 220, 200), outline=(0, 0, 0))
    draw.text((20, 380), fonts.text(*caption), font=fonts.get(24), fill=(0, 0, 0))
    return image


def _png(image: PILImage.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


# (task, drawing, question, reference, rewrites, tags)
def demo_items(fonts: Fonts) -> list[dict]:
    t = fonts.text
    rng = random.Random(20240609)
    items: list[dict] = []
    memes = [(("当我决定早睡", "Deciding to sleep early"), ("凌晨三点的我", "Me at 3 a.m."),
              "这张梗图对比了决定早睡的理想和凌晨三点仍在玩手机的现实，讽刺了拖延熬夜的习惯。"),
             (("健身第一天", "Gym, day one"), ("健身第二天", "Gym, day two"),
              "左边是第一天充满干劲的样子，右边是第二天累到不想动的样子，幽默地表现了健身难以坚持。"),
             (("老板说下班", "Boss: go home"), ("我的工作群", "My work chat"),
              "图片讽刺了下班后工作群仍然不停响的加班文化。")]
    for i, (top, bottom, ref) in enumerate(memes):
        items.append(dict(task="Meme", image=draw_meme(rng, fonts, top, bottom), tags=["meme"],
                          text="这张梗图想表达什么？", reference=ref,
                          rewrites=["请解释一下这张梗图的笑点。", "这个表情包的幽默之处在哪里？"] if i == 0 else []))
        items.append(dict(task="Description", image=draw_meme(rng, fonts, bottom, top), tags=["meme"],
                          text="描述图片。", reference="图片分为左右两部分，左边是蓝色背景上的黄色圆形，右边是橙色背景上的灰色方块，上方和下方都有文字。",
                          rewrites=["请描述这张图片的内容。", "请详细说说图里有什么。"] if i == 0 else []))
    signs = [[("营业时间", "Opening hours"), ("周一至周五 9:00-18:00", "Mon-Fri 9:00-18:00"), ("周六 10:00-16:00", "Sat 10:00-16:00"), ("周日休息", "Closed on Sunday")],
             [("收据 RECEIPT", "RECEIPT"), ("咖啡 ×2   ¥56", "Coffee x2   56"), ("蛋糕 ×1   ¥32", "Cake x1   32"), ("合计  ¥88", "Total  88")],
             [("北京南站 →", "Beijing South ->"), ("出口 EXIT B", "EXIT B"), ("地铁4号线", "Metro Line 4"), ("请勿吸烟", "No smoking")]]
    for i, lines in enumerate(signs):
        joined = "\n".join(t(*line) for line in lines)
        items.append(dict(task="OCR", image=draw_ocr(rng, fonts, lines), tags=["ocr"],
                          text="请识别图中的全部文字。", reference=joined,
                          rewrites=["把图片里的文字都提取出来。"] if i == 0 else []))
    items.append(dict(task="Reasoning", image=draw_ocr(rng, fonts, signs[0]), tags=["ocr"],
                      text="如果我周日去，能办事吗？为什么？", reference="不能。图中写明周日休息。", rewrites=["周日过去办事可行吗？请说明理由。"]))
    items.append(dict(task="Problem", image=draw_ocr(rng, fonts, signs[1]), tags=["ocr"],
                      text="如果再买一杯咖啡，总价是多少？", reference="每杯咖啡28元，再买一杯总价为88+28=116元。", rewrites=[]))
    charts = [(("2023年各季度销量（万台）", "Sales by quarter 2023"), [("一季度", "Q1"), ("二季度", "Q2"), ("三季度", "Q3"), ("四季度", "Q4")], [12, 18, 25, 20]),
              (("城市降雨量（毫米）", "Rainfall (mm)"), [("北京", "Beijing"), ("上海", "Shanghai"), ("广州", "Guangzhou")], [600, 1200, 1800]),
              (("学生人数", "Students"), [("一班", "Class 1"), ("二班", "Class 2"), ("三班", "Class 3"), ("四班", "Class 4")], [42, 38, 45, 40])]
    for i, (title, labels, values) in enumerate(charts):
        best = labels[values.index(max(values))]
        items.append(dict(task="Chart", image=draw_chart(rng, fonts, title, labels, values), tags=["chart"],
                          text="图中哪一项的数值最高？是多少？", reference=f"{t(*best)}最高，为{max(values)}。",
                          rewrites=["数值最大的是哪一项？具体是多少？", "请找出图表中最高的一项并给出数值。"] if i == 0 else []))
    items.append(dict(task="Comparison", image=draw_chart(rng, fonts, *charts[1][:2], charts[1][2]), tags=["chart"],
                      text="比较上海和北京的降雨量。", reference="上海1200毫米，北京600毫米，上海是北京的两倍。", rewrites=[]))
    for i, (count, shape, colour, zh) in enumerate([(5, "circle", (220, 60, 60), "红色圆形"), (7, "square", (60, 90, 220), "蓝色方块"), (3, "circle", (60, 170, 90), "绿色圆形")]):
        items.append(dict(task="Counting", image=draw_objects(rng, fonts, count, shape, colour), tags=["photo"],
                          text=f"图中有几个{zh}？", reference=f"{count}个。",
                          rewrites=[f"数一数图里一共有多少个{zh}。"] if i == 0 else []))
    scenes = [(("春天的小屋", "A house in spring"), "Recognition", "图中的主要建筑是什么？", "一座红色屋顶的小房子。"),
              (("晴天", "Sunny day"), "Knowledge", "图中的天气适合做什么户外活动？", "晴天，适合散步、野餐或晒太阳等户外活动。"),
              (("乡村", "Countryside"), "Writing", "根据这张图写一首四句的小诗。", "（开放式创作）小屋红顶映斜阳，绿草青青伴花香……"),
              (("午后", "Afternoon"), "Description", "请简要描述画面。", "画面中有一座红色屋顶的小房子，草地和太阳。"),
              (("远方", "Far away"), "Recognition", "图片右上角是什么？", "太阳。")]
    for i, (caption, task, text, ref) in enumerate(scenes):
        items.append(dict(task=task, image=draw_scene(rng, fonts, caption), tags=["photo"], text=text, reference=ref,
                          rewrites=["这幅图里最主要的建筑物是什么？"] if i == 0 else []))
    for i in range(4):
        items.append(dict(task="Problem" if i % 2 else "Reasoning", image=draw_objects(rng, fonts, 4 + i, "square", (200, 150, 40)),
                          tags=["photo"], text=f"如果拿走{i + 1}个方块，还剩几个？", reference=f"还剩{3}个。", rewrites=[]))
    items.append(dict(task="Coherence", image=draw_ocr(rng, fonts, signs[2]), tags=["ocr", "screenshot"],
                      history=[{"user": "这是哪里的指示牌？", "assistant": "这是北京南站的指示牌。"},
                               {"user": "上面提到了哪条地铁线路？", "assistant": "地铁4号线。"}],
                      text="那我应该从哪个出口出去？", reference="从B出口（EXIT B）出去。", rewrites=[]))
    items.append(dict(task="Incoherence", image=draw_chart(rng, fonts, *charts[0][:2], charts[0][2]), tags=["chart"],
                      history=[{"user": "哪个季度销量最高？", "assistant": "二季度销量最高，为18万台。"}],
                      text="不对，你再看一下图。", reference="抱歉，是三季度最高，为25万台。", rewrites=[]))
    return items


def ensure_demo_users() -> list[tuple[str, str, str]]:
    """One user per role plus an admin, random passwords kept in var/demo_logins.txt (0600)."""
    if not settings.EMBEDDED_MODE:
        raise RuntimeError("Demo logins are only created in the embedded default (no DATABASE_URL).")
    path = Path(settings.VAR_DIR) / "demo_logins.txt"
    known: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                known[parts[0]] = parts[2]
    logins = []
    for username, role in [("curator", CURATOR), ("annotator", ANNOTATOR), ("researcher", RESEARCHER), ("admin", "staff")]:
        user, created = User.objects.get_or_create(username=username)
        password = known.get(username)
        if created or password is None or not user.check_password(password):
            password = secrets.token_urlsafe(9)
            user.set_password(password)
        if role == "staff":
            user.is_staff = user.is_superuser = True
        user.save()
        if role != "staff":
            user.groups.add(Group.objects.get(name=role))
        logins.append((username, role, password))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("".join(f"{u} {r} {p}\n" for u, r, p in logins))
    os.chmod(path, 0o600)
    return logins


@transaction.atomic
def load_demo_dataset() -> dict[str, int]:
    path = find_cjk_font()
    fonts = Fonts(cjk=path is not None, path=path)
    curator = User.objects.filter(username="curator").first()
    dataset, _ = Dataset.objects.get_or_create(
        name=DEMO_DATASET, defaults={"description": "Drawn demo images over all 13 tasks.", "created_by": curator}
    )
    counts = {"images": 0, "questions": 0}
    per_task: dict[str, int] = {}
    for item in demo_items(fonts):
        image = ingest_image(_png(item["image"]), filename=f"demo-{item['task'].lower()}.png", user=curator,
                             source="alignbench demo", licence="CC0", tags=item["tags"]).image
        counts["images"] += 1
        index = per_task.get(item["task"], 0)
        per_task[item["task"]] = index + 1
        from .tasks_catalog import TASKS

        code = TASKS[item["task"]].code
        # Coherence and Incoherence share a task code; keep their seed indexes apart.
        offset = 500 if item["task"] == "Incoherence" else 0
        group = f"{code}{offset + index:04d}"
        texts = [item["text"], *item["rewrites"]]
        for variant, text in enumerate(texts):
            _, created = Question.objects.get_or_create(
                dataset=dataset, group=group, variant=variant,
                defaults=dict(image=image, task=item["task"], text=text, history=item.get("history", []),
                              reference=item["reference"] if variant == 0 else "",
                              origin=Question.Origin.HUMAN if variant == 0 else Question.Origin.LLM,
                              status=Question.Status.ACCEPTED, created_by=curator),
            )
            counts["questions"] += created
    counts["images_total"] = Image.objects.filter(questions__dataset=dataset).distinct().count()
    return counts
