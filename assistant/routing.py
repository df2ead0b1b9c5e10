"""What a resident's message calls for, before any answer is looked up.

Rules over the words residents really use, in order of what must never be missed: an emergency
(the twelve categories of the standards and any threat to life), a request for a person or a
complaint, a repair or service request, small talk, a message too vague to act on. Whatever is
left is a question for the knowledge base; whether it is answered depends on retrieval
confidence (see assistant.service).

Frightened people do not write "电梯困人": they write "电梯卡起了 娃儿在里头". Questions about
procedures ("电梯困人应急预案是什么", "万一着火了怎么逃生") are questions, not emergencies; a
complaint about a past emergency goes to a person; "没关人", "误报", "不深" turn an emergency
word into a repair.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from enum import StrEnum

from knowledge.text import chinese_number, correct_typos


class Action(StrEnum):
    answer = "answer"
    clarify = "clarify"
    chitchat = "chitchat"
    work_order = "work_order"
    human = "human"
    emergency = "emergency"


class Emergency(StrEnum):
    fire = "火灾"
    lift = "电梯困人"
    gas = "燃气泄漏"
    power = "停电"
    water_cut = "停水"
    flooding = "水浸"
    security = "盗窃与治安"
    crowd = "群体性事件"
    disaster = "恶劣天气/自然灾害"
    falling = "高空坠物"
    epidemic = "公共防疫"
    explosive = "防爆防恐"
    life = "人身安全"  # any threat to life: fainted, bleeding, fallen, suicide, a child in danger


def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in parts))


# A threat to set fire or to hurt someone is danger now, whoever writes it, even a conditional one.
THREATS = (
    r"(要|去|就)(放火)?(烧|炸|砍|捅|杀)(了|掉|死)?(你|他|她|房子|物业|人|全家)",
    r"(要|去|就)放火",
    r"同归于尽",
    r"(弄|打|砍|捅|杀)死(你|他|她|人)",
    r"(一把火|放把火)烧",
    r"(我|我们)(要|就)?把(你们|物业|房子|办公室|他|她|这).{0,8}烧(了|掉)",
    r"烧了(你们|他们|物业|房子|办公室)",
    r"(泼|浇|带|拎|买好)(了)?汽油",
    r"汽油(都)?(带|买|泼)",
)

# Each emergency category: the ways people say it is happening now.
EMERGENCY_PATTERNS: dict[Emergency, re.Pattern[str]] = {
    Emergency.fire: _rx(
        r"(?<![打点])(?<!打不)(?<!点不)着火",  # not a boiler that "打不着火"
        r"起火",
        r"失火",
        r"火灾(?!报警器|隐患)",
        r"烧起来",
        r"冒(黑)?烟",
        r"浓烟",
        r"到处是烟",
        r"好多烟",
        r"烟味(很|好|太)?(重|大|浓)",
        r"冒火星",
        r"火星子",
        r"火花",
        r"🔥",
        r"烧焦",
        r"(烧塑料|烧电线|焦糊|糊)的?(味|气味)",
        r"火苗",
        r"火势",
        r"烧着了",
        r"全是烟",
        r"烟(好|很|太)大",
        r"烟.{0,6}(下不去|出不去)",
        r"(看得见|看得到|看见|全是|都是|满是)(黑)?烟",
    ),
    Emergency.lift: _rx(
        r"(困|关|卡|锁)(在)?(电梯|轿厢)",
        r"电梯.{0,12}(困|关(?!门)|卡(住|起|了)|出不去|在里(面|头)|里(面|头)有(人|个|小孩|老人|娃|孩子)|门打不开|开不了门)",
        r"(电梯|轿厢)里.{0,6}(出不去|出不来|救命)",
        r"电梯.{0,10}我在里",
        r"电梯[^。！？!?]{0,40}还(关|困|卡)在(里面|里头)",
        r"电梯[^。！？!?]{0,24}(里面|里头)(是|有|关着|困着)(我|人|小孩|孩子|老人|娃)",
        r"(他|她|人|孩子|小孩|老人|我)(还)?在电梯里",
        r"电梯[^。！？!?]{0,30}(我|我们|孩子|小孩|人|老人|女儿|儿子|外婆|外公|奶奶|爷爷|妈|爸)[^。！？!?]{0,6}(都|还)?在里(面|头)",
        r"(电梯)?门.{0,4}夹(住|到)(了)?.{0,4}(手|脚|人|小孩|孩子|头|腿)",
    ),
    Emergency.gas: _rx(
        r"(煤气|燃气|天然气|液化气)(味|泄漏|泄露|漏了)",
        r"漏气",
        r"臭鸡蛋味",
        r"嘶嘶",
    ),
    Emergency.power: _rx(
        r"(整栋|整幢|整个|全|整层|整片|全楼|一片).{0,6}(停电|没电|黑了|全黑|漆黑)",
        r"突然.{0,4}(停电|全黑|断电)",
        r"(全|整栋|整个).{0,4}断电",
        r"停电.{0,12}(漆黑|电梯.{0,4}停|看不见|打不开)",
    ),
    Emergency.water_cut: _rx(
        r"(整栋|整幢|整个|全|整层|全楼).{0,10}(停水|没水|不出水|断水|一点水都没)",
        r"突然.{0,4}停水",
        r"一点水都没有",
        r"一滴水都没",
        r"突然.{0,8}(没水|没有水|一滴水)",
    ),
    Emergency.flooding: _rx(
        r"(家里|屋里|房间|地下室|车库|地库|楼道|一楼|客厅|卧室).{0,4}进水了",
        r"浸水",
        r"(淹|泡)(了|水)",
        r"水.{0,10}(漫|灌|倒灌)",
        r"(水管|管道|水箱)(爆|裂)了",
        r"往外喷",
        r"水漫金山",
        r"像下雨一样",
        r"(漫过|淹到|没过|没到|漫到).{0,4}(车轮|轮胎|膝盖|脚踝|脚面|脚背|小腿|腰|门口)",
        r"(源源不断|不断|一直|哗哗).{0,6}(冒水|涌水|往外冒|往里灌|往里涌)",
        r"(整个|几个|满)(地下室|车库|屋子|房间|屋|家).{0,6}(都是水|全是水|积水|进水)",
    ),
    Emergency.security: _rx(
        r"撬.{0,3}(门|锁|窗)",
        r"小偷",
        r"偷东西",
        r"入室",
        r"打架",
        r"(拿|持|举)(着)?.{0,2}(刀|棍|棒|砖)",
        r"砸车",
        r"按(在)?地上(打|揍)",
        r"(围殴|群殴)",
        r"追(着)?(人|我|砍)",
        r"砍人",
        r"抢劫",
        r"追我",
        r"往.{0,6}(阳台|窗户)爬",
        r"闯进",
        r"打人了",
        r"有人.{0,4}跟踪",
        r"进(了)?贼",
        r"被盗",
        r"被偷",
        r"翻得乱七八糟",
        r"陌生人.{0,6}(闯|进|撬|翻)",
        *THREATS,
    ),
    Emergency.crowd: _rx(
        r"围了.{0,6}(人|群)",
        r"横幅",
        r"一大群人",
        r"(好多|几十个|上百)人.{0,6}(堵|围|闹|聚)",
        r"堵在.{0,6}门口.{0,4}(吵|闹)",
        r"聚集",
        r"闹事",
        r"快打起来",
    ),
    Emergency.disaster: _rx(
        r"(刮|吹|砸)倒",
        r"滑坡",
        r"(土|山体|泥|石头).{0,6}(往下)?(滑|垮|滚)",
        r"推倒了",
        r"泥石流",
        r"地震",
        r"倒塌",
        r"塌了",
        r"冰雹.{0,6}(砸|碎)",
        r"电线.{0,6}(扯|断|掉)",
        r"(快|要)(倒|塌)了",
        r"(广告牌|围墙|树).{0,6}(倒|塌|歪)",
        r"(窗|玻璃|门).{0,6}(吹|刮)(破|碎|掉|飞|烂)",
        r"(台风|大风|狂风).{0,10}(吹破|吹碎|吹掉|吹飞|吹烂|刮破|刮掉)",
        r"挡土墙.{0,6}(裂|垮|塌|掉土)",
    ),
    Emergency.falling: _rx(
        r"掉下来",
        r"砸下来",
        r"砸到",
        r"坠落",
        r"往下扔",
        r"(快|要)掉下",
        r"摇摇晃晃",
        r"(楼上|窗外|阳台).{0,6}扔下",
    ),
    Emergency.epidemic: _rx(
        r"确诊",
        r"密切接触者",
        r"密接",
        r"传染病",
        r"(好几户|好多人|好几个人|好几个|集体).{0,8}(发烧|发高烧|腹泻|上吐下泻|呕吐|咳嗽)",
        r"疫情",
        r"(集体|群体)(感染|中毒)",
        r"食物中毒",
    ),
    Emergency.explosive: _rx(
        r"要炸",
        r"炸了我们",
        r"炸弹",
        r"爆炸",
        r"可疑(的)?(包|物品|包裹|箱|袋|纸箱|行李)",
        r"(包|箱|袋|盒).{0,8}滴滴响",
        r"(包|箱|袋|盒|包裹).{0,12}(滴答|嘀嗒)",
        r"黑包",
        r"缠着电线",
        r"爆炸物",
    ),
    Emergency.life: _rx(
        r"晕倒",
        r"昏倒",
        r"昏迷",
        r"倒在地上",
        r"流(了)?(好多|很多)?血",
        r"摔倒.{0,8}起不来",
        r"不想活",
        r"自杀",
        r"轻生",
        r"跳楼",
        r"站在窗台",
        r"(爬|坐|站)(到|在)?.{0,4}窗台",
        r"窗(台|户)(上|外).{0,12}(小孩|孩子|娃)",
        r"(小孩|孩子|娃).{0,8}(在|坐在|站在|爬到)?窗(台|户)(上|外)",
        r"(楼顶|天台).{0,8}(坐在|站在)?边上",
        r"(爬上|爬到)(了)?(楼顶|天台)",
        r"(楼顶|天台).{0,10}(小孩|孩子)",
        r"女儿墙",
        r"(人|他|她|老人|孩子|小孩|老太太|老头)[^，。！？,!?]{0,6}没(了)?动静",
        r"(喊|叫)(他|她|了)?.{0,2}(也)?没(有)?反应",
        r"躺(在)?地上.{0,4}(不动|起不来|没反应|没动静|叫不醒)",
        r"掉进.{0,6}(水|池|河|井)",
        r"溺水",
        r"救命",
        r"快来人(?!修|看|通|弄|清|处理)",
        r"没(有)?呼吸",
        r"心脏病(犯|发作)",
        r"抽搐",
        r"窒息",
        r"喘不上气",
        r"没意识",
        r"叫不醒",
        r"锁在车里",
        r"(关|困)在车里",
        r"暴晒",
        r"呼吸机",
        r"氧气机",
        r"喘不过气",
        r"被(狗|蛇)咬",
        r"触电",
        r"中毒",
        r"昏过去",
        r"不省人事",
        r"大出血",
        r"割腕",
        r"(割|划)(破|伤)(了)?.{0,3}(脖子|喉咙|动脉|头)",
        r"晕过去",
        r"(压|砸|卡)(在|住)(了)?.{0,8}(动不了|出不来|起不来)",
        r"(快|救)救(我|我们|我家|孩子|老人|老伴)",
        r"(120|110|119)[^，。！？,!?]{0,6}(打不通|联系不上|没人接|占线)",
        r"(联系不上|打不通)[^，。！？,!?]{0,4}(120|110|119)",
    ),
}

# A question about a procedure, asked ahead of time.
# A what-if about the danger; beside danger now it asks what the danger may do next (see _asks_about).
_WHAT_IF = ("万一", "如果", "假如", "要是", "的话")
_KNOWLEDGE = _rx(
    r"预案", r"流程", r"标准", r"制度", r"培训", r"演练", *_WHAT_IF, r"提前",
    r"应该怎么", r"该怎么做", r"应该先做什么", r"一般(会|怎么|要)", r"平时", r"教教", r"想了解", r"注意(什么|哪些)",
    r"有什么要求", r"管不管", r"怎么处理", r"多久能", r"的时候", r"是怎么", r"怎么组织",
)  # fmt: skip
# Signs that it is happening now (these beat the procedure markers).
_URGENT = _rx(
    r"救命",
    r"快(来|点|救)",
    r"现在",
    r"正在",
    r"马上",
    r"!!|！！",
    r"好害怕",
    r"快来人",
    r"来人(啊|呀)",
    r"在里(面|头)",
)
# An emergency word that the message itself says is not (or no longer) one.
_DEFUSED = _rx(
    r"没(有)?(关|困)人", r"(里面|里头)没(有)?人", r"误报", r"没着火", r"不深", r"有点积水", r"过后", r"已经(灭|好|修好|来电|来水)",
    r"(上次|上回|上个月|上周|那次|之前|昨天).{0,10}(投诉|说法|太慢|处理得)", r"投诉", r"(已|有|提前)(经)?通知", r"通知(说|了)",
)  # fmt: skip

_NOTICE = re.compile(r"通知")
# Danger to life is never turned into a repair by a word like "误报" in the same message: ask
# a person to check instead.
NEVER_DEFUSED = frozenset({Emergency.life})

_PERSON = _rx(
    r"转人工", r"^人工", r"人工(服务|客服)", r"找(个)?(客服|真人|人工)", r"真人", r"活人", r"(叫|找|让)你们.{0,4}(经理|领导|负责人|主管)",
    r"(经理|领导|负责人|主管).{0,4}(电话|来|当面)", r"跟你们领导", r"有没有人管", r"没人理", r"转给.{0,6}(经理|领导|客服|人工|主管)", r"人工客服", r"客服(人员|小姐姐|在吗)",
)  # fmt: skip
_COMPLAINT = _rx(
    r"投诉(?!.{0,6}(渠道|流程|电话是|方式|处理完|回访|怎么投))", r"我要投诉", r"不作为", r"曝光", r"媒体", r"记者",
    r"12345", r"市长热线", r"住建局", r"告你们", r"起诉", r"律师", r"举报", r"退钱", r"退.{0,2}物业费", r"不交了",
    r"说法", r"太过分", r"没完", r"态度(太|很|真|极)?差", r"乱收费", r"收钱不办事", r"还好意思收钱", r"破机器人",
    r"听不懂人话", r"垃圾物业", r"(^|\s)滚", r"傻[逼bB]", r"干什么吃的", r"是干什么的", r"气死", r"忍了很久", r"破物业", r"差劲", r"不想干了", r"(要求|必须|马上|给我)退还", r"多收(了)?", r"拖了.{0,4}(天|周|个月|月|年)", r"(一直|还)没(人)?(解决|处理|回复)", r"敷衍", r"欺负", r"骗子", r"黑心", r"霸王条款", r"维权", r"差评",
    r"坑(业主|人|钱|我们)", r"捞钱", r"(一直|老是|总是|还是)(都)?(不|没)(人)?(修|管|来|处理|解决)",
    r"难道", r"凭什么", r"(作为|责任|管理|服务)(到底)?在哪",  # a rhetorical question is a grievance
)  # fmt: skip
_HOW_TO_COMPLAIN = _rx(r"投诉.{0,6}(渠道|流程|方式|怎么投|处理完|回访)", r"怎么投诉")

_REPAIR = _rx(
    r"坏(了|掉|啦)", r"不亮", r"不灭", r"一直亮", r"漏水", r"渗水", r"滴水", r"返水", r"堵(了|住|啦)", r"不通",
    r"下不去", r"没反应", r"(不|没)动(了)?", r"松(了|动)", r"掉了", r"裂(了|开|缝)", r"有条缝", r"碎了", r"断了",
    r"关不上", r"打不开", r"异响", r"哐哐", r"没人(清|扫|收|管|处理)", r"满了", r"臭(了|味)", r"没修剪", r"修剪一下",
    r"堆满", r"(被|让)(人|别人)?占", r"挪(一下|车)", r"被车堵", r"小广告", r"死老鼠", r"蚊子", r"苍蝇", r"消杀", r"清理一下",
    r"清一下", r"修一下", r"修好", r"派(个)?师傅", r"来修", r"报修[：:]", r"跳闸", r"没水了", r"没电了", r"狗屎",
    r"积水", r"(吵|噪音).{0,12}(还在|打电钻|装修)", r"半夜叫", r"堵了", r"又坏", r"刷不开", r"听不到", r"不出水",
    r"水压", r"伸到", r"油烟", r"报个修", r"(要|想)报修", r"一直闪", r"闪个不停", r"不见了", r"(屏幕|灯|灯管)?黑了", r"(取|用|进|出)不了", r"挡住", r"撞(歪|坏|断)", r"歪了", r"没(人)?清", r"臭得", r"发霉", r"脱落", r"起皮", r"鼓包", r"生锈", r"失灵", r"没信号", r"卡住了", r"关不严", r"不热", r"不制冷",
)  # fmt: skip
_PROCESS_QUESTION = _rx(
    r"一般", r"通常", r"多久能", r"要多久", r"收费", r"收不收", r"材料费", r"怎么算", r"怎么报", r"哪个电话", r"流程",
    r"规定", r"几点", r"可以.{0,6}吗", r"能不能.{0,8}吗", r"要不要", r"怎么(办理|补办|收|交)",
)  # fmt: skip

_CHITCHAT_WORDS = _rx(
    r"你好(呀|啊)?", r"您好", r"在吗", r"谢谢(你|您|啦|了)?", r"多谢", r"感谢", r"辛苦(了|啦)?", r"拜拜", r"再见",
    r"晚安", r"早上好(呀)?", r"早安", r"中午好", r"晚上好", r"好的", r"知道了", r"收到", r"明白(了)?", r"嗯+", r"哦+",
    r"哈+", r"ok", r"okay", r"新年快乐", r"中秋快乐", r"节日快乐", r"春节快乐", r"国庆快乐", r"物业的小伙伴们",
    r"帮大忙了", r"点个赞", r"很专业", r"下午好", r"早点休息", r"(挺|真|很)聪明", r"好嘞", r"好滴", r"谢啦", r"麻烦(你|您)了", r"没事了", r"好吧", r"你是机器人吗", r"你是谁", r"你叫什么(名字)?", r"今天天气(真|很)?(好|不错)",
    r"大家", r"呀", r"啊", r"哈", r"嘛", r"呢", r"你还", r"的",
)  # fmt: skip
_CHITCHAT_FULL = _rx(r"师傅.{0,8}(专业|负责|不错).{0,6}(赞|表扬|感谢)?", r"^(表扬|好评)")
_VAGUE = _rx(
    r"有个问题", r"有(个)?事", r"问个事", r"上次说的(那个)?", r"就是", r"问(一)?下", r"想问(个事|一下|下)?", r"咨询(一下)?", r"请问", r"这个", r"那个", r"帮我看看",
    r"怎么(办|弄)(啊|呀)?", r"还是上次(那个)?事", r"关于", r"的", r"我", r"东西", r"又", r"一下", r"怎么",
)  # fmt: skip

_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")
_SPACE_PUNCT = re.compile(r"[\s\W_]+")

_LOCATION = re.compile(
    r"(?P<building>[0-9一二三四五六七八九十]{1,3})\s*(?:栋|幢|号楼|座)"
    r"(?:\s*(?P<unit>[0-9一二三四五六七八九十]{1,2})\s*单元)?"
    r"(?:\s*(?P<room>\d{3,4})\s*(?:室|号|房)?)?"
)
_DASHED_LOCATION = re.compile(r"(?<!\d)(?P<building>\d{1,2})-(?P<unit>\d{1,2})-(?P<room>\d{3,4})(?!\d)")
_ROOM_ONLY = re.compile(r"(?<![\d.])(?P<room>\d{3,4})\s*(?:室|号房|房)")


@dataclass(frozen=True)
class Location:
    building: str | None = None
    unit: str | None = None
    room: str | None = None

    def __bool__(self) -> bool:
        return bool(self.building or self.unit or self.room)

    def __str__(self) -> str:
        return "".join(p for p in (self.building, self.unit, self.room) if p)


def _number(text: str) -> str:
    value = chinese_number(text)
    return str(int(value)) if value is not None else text


def parse_location(text: str) -> Location:
    """楼栋/单元/房号 as residents write them: 3栋2单元1102, 3号楼, 5-2-702, 一单元 (numbers kept as given)."""
    if m := _DASHED_LOCATION.search(text):
        return Location(f"{m['building']}栋", f"{m['unit']}单元", m["room"])
    if m := _LOCATION.search(text):
        return Location(
            f"{_number(m['building'])}栋",
            f"{_number(m['unit'])}单元" if m["unit"] else None,
            m["room"],
        )
    unit = re.search(r"([0-9一二三四五六七八九十]{1,2})\s*单元", text)
    room = _ROOM_ONLY.search(text) or re.search(r"(?<![\d.:：])(\d{3,4})(?![\d.:：元块])", text)
    if unit or room:
        return Location(
            None, f"{_number(unit.group(1))}单元" if unit else None, room.group(1) if room else None
        )
    return Location()


def normalise(text: str) -> str:
    """Full-width to half-width, lower case, one space between words, typos of domain words fixed
    ("电体里关了人": the rules look for 电梯)."""
    text = correct_typos(unicodedata.normalize("NFKC", text).lower())
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class Route:
    action: Action | None  # None: a question for the knowledge base (answer or clarify by confidence)
    emergency: Emergency | None = None
    reason: str = ""
    vague: bool = False
    defused: bool = False  # emergency words that the message itself says are not an emergency now
    # Danger described, not happening now (a past incident, a chronic fault, a what-if): a person
    # takes it as an urgent complaint flagged 安全隐患, and the category says what kind of danger.
    hazard: Emergency | None = None
    # The message also asks for a concrete repair: register the work order beside the hand-over.
    repair: bool = False
    # A long message (a letter, a call transcript): never asked to rephrase; what retrieval cannot
    # answer goes to a person.
    substantial: bool = False
    urgent: bool = False  # a long message that also says something is urgent (救命, 现在, 快来…)
    # It tells of the past or of a risk and of nothing happening now ("这已是第4次家里浸水了"):
    # the intent model, which reads words and not tense, needs to be sure to call it an emergency.
    told: bool = False
    # A message of some length that tells of something and asks nothing ("这已是第4次家里浸水了"):
    # not a question for the knowledge base, and never "please rephrase".
    statement: bool = False


def emergency_category(text: str) -> Emergency | None:
    for category, pattern in EMERGENCY_PATTERNS.items():
        if pattern.search(text):
            return category
    return None


def _content(text: str, filler: re.Pattern[str]) -> str:
    """What is left of a message once greetings, fillers, emoji and punctuation are removed."""
    return _SPACE_PUNCT.sub("", filler.sub("", _EMOJI.sub("", text)))


# --- reading a whole message: is the danger happening now? ---------------------------------------
#
# Real residents write long: a letter about lifts that "经常有人被困" last year, fire equipment that
# has been "零维护" since the fire at New Year, "万一着火了怎么办". Such words describe danger; they
# are not a call for help. Each emergency word is read in its own sentence (or, in a transcript
# without punctuation, in the words around it): a sign of now there makes it an emergency; a sign
# of the past, of frequency, of a risk or of a what-if makes it a hazard for a person.

# Signs that the danger is happening as the resident writes: sure ones, and "现在", which a
# letter also uses for its present state ("现在就是怕再次起火").
_NOW = _rx(
    r"正在", r"刚才", r"刚刚", r"此刻", r"这会儿", r"还(关|困|卡|锁)(在|着)", r"还在(里|烧|冒|往|流|漏|喷|砸|打|追|闹|滑|掉|涨)", r"快(来|点|救|叫人)",
    r"赶(紧|快)", r"马上(来|过来)", r"立刻", r"救命(?![的钱通])", r"快来人", r"来人(啊|呀)", r"求救", r"帮帮", r"!!|！！", r"好害怕",
    r"出不去", r"出不来", r"(人|我|孩子|小孩|娃|老人)(还)?(在|就在)(里面|里头)", r"马上派人", r"(请|快|赶紧).{0,2}(派人|过来)", r"马上派",
)  # fmt: skip
# A cry for help in a long message (a letter also says "正在创建文明城市").
_HASTE = _rx(
    r"救命", r"快来人", r"快(来|救)", r"赶(紧|快)(来|救|过来)", r"马上(来|过来)", r"求救", r"!!|！！", r"好害怕", r"出不去",
    r"出不来", r"还(关|困|卡)(在|着)", r"(马上|赶紧|快|请)派人", r"(请|快|赶紧).{0,2}过来",
)  # fmt: skip
_NOW_WEAK = _rx(r"(?<![到至])现在", r"眼下", r"目前还", r"今晚", r"今天晚上")
# Signs that it is not: a risk, a fear, a what-if, a missing safeguard…
_RISK = _rx(
    r"隐患", r"风险", r"万一", r"一旦", r"如果", r"假如", r"要是", r"倘若", r"若(是|有|发生|遇)", r"难免", r"迟早",
    r"(可能|会|易|容易|极易|随时).{0,4}(引发|导致|造成|发生|出现|起火|着火|失火)", r"以免", r"避免", r"防止", r"预防",
    r"不堪设想", r"瘫痪", r"形同虚设", r"零维护", r"(没有|未)(配备|配置|安装|设置)", r"不达标", r"不合格", r"担心", r"担忧",
    r"生怕", r"就怕", r"怕(再|又|万一)", r"再次", r"真(的)?(要|要是)?(是)?.{0,4}(出事|着火|起火|失火|砸到|砸死|掉下来|发生|出了)",
    r"听说", r"隔壁小区", r"(别|其他)的小区", r"新闻(上|里)", r"哪天", r"哪一天", r"要等", r"等到",
    r"出了人命", r"谁(来)?负责", r"担(得|不)起", r"不然", r"否则", r"再(这样|不)",
    r"就不好了", r"可(怎么|咋)办", r"很容易", r"极易",
)  # fmt: skip
# … or when it was, and how often.
# When it was, said outright.
_WHEN = (
    r"去年", r"前年", r"上(个)?(月|周|星期|礼拜)", r"上(一)?次", r"上回", r"那次", r"那天", r"当时", r"曾(经)?", r"以前", r"之前",
    r"前段时间", r"前些(天|日子|年)", r"前几(天|年|个月)", r"早几年", r"几年前", r"年初", r"年底", r"昨天", r"昨晚", r"前天", r"前晚",
    r"发生过", r"出现过", r"有过",
)  # fmt: skip
_PAST = _rx(
    *_WHEN, r"当天", r"过去(的|几|那|一|两|三|\d|曾|这)", r"\d{2,4}年", r"\d{1,2}月\d{1,2}(日|号)", r"春节", r"元旦", r"除夕",
    r"过年", r"国庆", r"多次", r"屡次", r"(好|几|数|两|三|\d)次", r"经常", r"常常", r"时常", r"总是", r"老是", r"频繁", r"频发",
    r"动不动", r"三天两头", r"每次", r"一再", r"反复", r"司空见惯", r"屡", r"高发", r"(到|至)现在", r"至今",
    r"前(两|三|\d+)(天|年|个月|周)", r"\d{1,2}月份", r"(着火|起火|火灾|事故|事件|爆炸|被困|失火)(以|之)后",
    r"(好|几|数|两|三|\d)(回|趟)", r"昨日", r"(人)?没事了", r"已经(被)?(救出|送医|出来|灭了)", r"送(去)?医院了",
    r"那.{0,3}(分钟|小时|天|晚|次)",
)  # fmt: skip
# A letter composed for someone in charge: a report or a petition, not a cry for help.
_ADDRESSED = _rx(
    r"尊敬的", r"领导", r"书记", r"市长", r"县长", r"局长", r"主任", r"政府", r"(相关|有关|职能|主管)部门", r"反映",
    r"举报", r"恳请", r"呼吁", r"诉求", r"特此", r"望(贵|领导|政府|相关)", r"请(求)?(相关|有关|政府|领导|贵)", r"责成",
    r"要求.{0,12}(调查|查处|处罚|处理|整改|追责)",
)  # fmt: skip
_SENTENCE_END = "。！？!?；;\n"
SUBSTANTIAL = 50  # characters of content: a letter or a transcript rather than a chat message
STATEMENT = 20  # characters of content from which a message that asks nothing tells of something
WINDOW = 24  # characters either side of an emergency word in a long or unpunctuated sentence


def _around(text: str, start: int, end: int) -> tuple[int, int]:
    """The sentence around a match; in a sentence too long to tell (a transcript without
    punctuation) the WINDOW characters either side."""
    left = max(text.rfind(c, 0, start) for c in _SENTENCE_END) + 1
    ends = [i for i in (text.find(c, end) for c in _SENTENCE_END) if i != -1]
    right = min(ends) if ends else len(text)
    if right - left > 3 * WINDOW:
        left, right = max(left, start - WINDOW), min(right, end + WINDOW)
    return left, right


_THREAT = _rx(*THREATS)


# When it was, said of the danger itself: a chat message is read as past only with one of these in
# the same clause as the danger word, and no sign of now anywhere in it.
_PAST_STRONG = _rx(*_WHEN)
_CLAUSE_END = re.compile(r"[，,。！？!?；;\n ]")


def _happened_before(text: str, end: int) -> bool:
    """淹过, 困过, 烧过 right after the danger word; not 漫过门口, 倒灌过来."""
    return text.startswith("过", end) and not re.match(
        r"过(来|去|门|口|膝|脚|车|轮|腰|小|头|道|了)", text[end:]
    )


def _clause(text: str, start: int, end: int) -> str:
    """The clause (between commas, stops or spaces) around text[start:end]."""
    left = max((m.end() for m in _CLAUSE_END.finditer(text, 0, start)), default=0)
    found = _CLAUSE_END.search(text, end)
    return text[left : found.start() if found else len(text)]


def _asks_about(text: str, now: Emergency) -> bool:
    """A question about the danger read as happening now ("燃气泄漏了第一步该干啥 物业有没有应急预案"),
    not a what-if asked beside it ("着火了 万一烧到楼上怎么办"): a what-if word must be in the danger
    word's own clause."""
    if any(m.group(0) not in _WHAT_IF for m in _KNOWLEDGE.finditer(text)):
        return True  # a procedure, wherever it is asked
    match = EMERGENCY_PATTERNS[now].search(text)
    return match is None or bool(_KNOWLEDGE.search(_clause(text, match.start(), match.end())))


def _told_in_its_clause(text: str, category: Emergency) -> bool:
    """A short message that tells of a past danger ("上个月地下室着火后消防栓一直没水"), and not one
    that mentions the past beside danger now ("电梯困人了，已经是第三次了", "去年就坏过，现在又关人")."""
    if _NOW.search(text) or _NOW_WEAK.search(text) or "又" in text:
        return False
    match = EMERGENCY_PATTERNS[category].search(text)
    if match is None:
        return False
    clause = _clause(text, match.start(), match.end())
    return (
        bool(_PAST_STRONG.search(clause) or _RISK.search(clause))  # "一旦发生火灾，消防车进不来"
        or _happened_before(text, match.end())
    )


def danger(text: str) -> tuple[Emergency | None, Emergency | None]:
    """(happening now, described only): the first emergency category whose words are read as
    happening now, and otherwise the first one described as past, chronic or possible."""
    substantial = len(_SPACE_PUNCT.sub("", text)) >= SUBSTANTIAL
    addressed = substantial and bool(_ADDRESSED.search(text))
    described: Emergency | None = None
    for category, pattern in EMERGENCY_PATTERNS.items():
        for match in pattern.finditer(text):
            left, right = _around(text, match.start(), match.end())
            # the emergency word itself is no sign of now ("救命" in "救命通道"); it is part of a
            # what-if ("真着起火来")
            near = text[left : match.start()] + " " + text[match.end() : right]
            window = text[left:right]
            if _NOW.search(near):
                return category, None
            if _happened_before(text, match.end()):  # 淹过, 困过, 烧过: it happened before
                described = described or category
                continue
            if _THREAT.match(text, match.start()) and not _PAST.search(near):
                return category, None  # "再不解决我就一把火烧了你们物业": a threat is danger now
            # a what-if; in a chat message whose danger clause tells it as happened (了), only in
            # that clause: "着火了 万一烧到楼上怎么办" is a fire now
            own = _clause(text, match.end() - 1, match.end())
            if _RISK.search(window if substantial or "了" not in own else own):
                described = described or category
                continue
            # "去年就坏过，现在又把我关在里面" against "上个月燃气味很重…现在想问一下": the marker
            # nearest the danger word says when it is
            markers = [(m.start(), False) for m in _NOW_WEAK.finditer(window)]
            markers += [(m.start(), True) for m in _PAST.finditer(window)]
            if markers:
                middle = match.start() - left
                _, past = min(markers, key=lambda marker: abs(marker[0] - middle))
                if not past:
                    return category, None
            if markers or addressed:
                described = described or category
                continue
            # a long message says so when it is happening; one that tells of the past or of a risk
            # elsewhere and nowhere of now describes ("之前台风…掉下来砸的")
            if (
                substantial
                and not (_NOW_WEAK.search(text) or _HASTE.search(text))
                and (_PAST.search(text) or _RISK.search(text))
            ):
                described = described or category
                continue
            return category, None
    return None, described


# A long message that states a wrong (what someone did or failed to do, and what it cost) …
_WRONG = _rx(
    r"投诉", r"举报", r"控告", r"申诉", r"维权", r"讨(个)?说法", r"给(个|一个)说法", r"曝光", r"违规", r"违法", r"违章",
    r"违建", r"违约", r"私自", r"擅自", r"强行", r"强制", r"霸占", r"侵占", r"侵犯", r"侵害", r"损害", r"欺骗", r"欺诈",
    r"虚假", r"乱收", r"多收", r"捆绑", r"克扣", r"拖欠", r"推诿", r"扯皮", r"踢皮球", r"不作为", r"不管不问", r"不闻不问",
    r"置之不理", r"无人(问津|管|理|处理)", r"没(有)?人(管|理|处理)", r"敷衍", r"刁难", r"威胁", r"恐吓", r"殴打", r"辱骂",
    r"恶劣", r"蛮横", r"霸道", r"无理", r"不合理", r"不公", r"扰民", r"噪音(太|很|特别|严重|超标)", r"苦不堪言", r"夜不能寐",
    r"无法(正常)?(休息|入睡|睡觉|生活|出行|居住|通行)", r"损失", r"受伤", r"赔偿", r"补偿", r"退还", r"退款", r"退费", r"至今",
    r"迟迟", r"一直.{0,6}(没|未|不)", r"屡次", r"断(水|电)", r"停(水|电).{0,10}(威胁|逼|要挟|为由)", r"凭什么", r"难道",
    r"岂不是", r"太过分", r"不负责", r"不到位", r"失职", r"渎职",
)  # fmt: skip
# … or asks someone to act beyond a repair: for a person.
_GRIEVANCE = _rx(
    _WRONG.pattern, r"反映", r"要求.{0,16}(赔偿|退|整改|处理|解决|查处|调查|说法|答复|停止|拆除|恢复)", r"恳请", r"请求",
    r"希望.{0,16}(解决|处理|查处|调查|监管|督促|整改|重视|主持公道|说法|答复)", r"责令", r"查处", r"追究", r"纠纷", r"矛盾",
    r"争议", r"业委会", r"业主委员会", r"开发商", r"为什么", r"监管",
)  # fmt: skip
# A letter or call that is there to thank someone.
_THANKS = _rx(
    r"表扬", r"感谢信", r"锦旗", r"拾金不昧", r"致谢", r"表示(衷心的?|诚挚的?)?感谢", r"(特|谨)(写此信|致此信)", r"说(一)?声谢谢",
    r"谢谢.{0,8}(师傅|阿姨|经理|小姐|先生|保安|大家)", r"(非常|衷心|真的很|十分|由衷)感谢", r"感谢.{0,12}(师傅|阿姨|经理|保安|员工|物业)",
)  # fmt: skip
# Thanks and praise for someone's work (a thank-you letter, a 锦旗), with no grievance in it.
_PRAISE = _rx(
    r"感谢", r"谢谢", r"多谢", r"表扬", r"致谢", r"锦旗", r"点赞", r"称赞", r"赞扬", r"好评", r"辛苦(了|啦)", r"感激",
    r"暖心", r"贴心", r"热心", r"尽职尽责", r"认真负责", r"拾金不昧", r"感谢信",
)  # fmt: skip
_PRAISED = _rx(
    r"及时", r"耐心", r"热心", r"热情", r"负责", r"认真", r"帮助", r"帮忙", r"帮我", r"周到", r"细心", r"专业", r"尽职", r"用心",
    r"暖心", r"贴心", r"满意", r"拾金不昧", r"锦旗", r"感动", r"感激", r"值得", r"榜样", r"好评", r"点赞",
)  # fmt: skip


def route(raw: str) -> Route:
    text = normalise(raw)
    decided = _route(text)
    if (
        decided.action is not Action.emergency
        and (_PAST.search(text) or _RISK.search(text))
        and not _NOW.search(text)
    ):
        return replace(decided, told=True)
    return decided


def _route(text: str) -> Route:
    if not _SPACE_PUNCT.sub("", _EMOJI.sub("", text)):
        # Only emoji or punctuation: "🙏🙏" is thanks, "？？" asks for something unsaid.
        return Route(Action.chitchat if _EMOJI.search(text) else Action.clarify, reason="no words")
    substantial = len(_SPACE_PUNCT.sub("", text)) >= SUBSTANTIAL

    category, described = danger(text)
    # Only a letter or a transcript can tell danger as past or possible: in a chat message "电梯困人了，
    # 已经是第三次了" is someone trapped now. Danger to a person's life is never a hazard.
    hazard_only = (
        category is None
        and described is not None
        and described not in NEVER_DEFUSED
        and (substantial or _told_in_its_clause(text, described))
    )
    now = category
    category = category or described
    if category is not None:
        urgent = bool(_URGENT.search(text))
        defused = _DEFUSED.search(text)
        if (
            defused
            and _NOTICE.search(defused.group(0))
            and category not in (Emergency.power, Emergency.water_cut)
        ):
            defused = None  # "着火了，已经通知保安了" is still a fire; only outages are announced ahead
        if defused and not urgent and category not in NEVER_DEFUSED:
            if _COMPLAINT.search(text) or _PERSON.search(text):
                return Route(Action.human, reason=f"complaint about {category.value}", defused=True)
            if _REPAIR.search(text) or _PROCESS_QUESTION.search(text) is None:
                return Route(Action.work_order, reason=f"defused {category.value}", defused=True)
            return Route(None, reason=f"question about {category.value}", defused=True)
        if (
            _KNOWLEDGE.search(text)
            and not urgent
            and not substantial
            and (now is None or _asks_about(text, now))  # danger only described: a question
        ):
            statement = len(_SPACE_PUNCT.sub("", text)) >= STATEMENT and not _ASKS.search(text)
            return Route(None, reason=f"question about {category.value}", defused=True, statement=statement)
        if hazard_only and _THANKS.search(text) and not (_WRONG.search(text) or _COMPLAINT.search(text)):
            return Route(Action.chitchat, reason="thanks", substantial=substantial)  # a rescue praised
        if hazard_only:
            # "这已是第4次家里进水了", "去年电梯多次困人": a person, urgently, not the duty engineer
            return Route(
                Action.human, reason=f"hazard:{category.value}", hazard=category,
                repair=bool(_REPAIR.search(text)), substantial=substantial,
            )  # fmt: skip
        return Route(Action.emergency, emergency=category, reason=category.value)

    if substantial:
        return _route_letter(text)

    if _PERSON.search(text):
        return Route(Action.human, reason="asked for a person")
    if _COMPLAINT.search(text) and not _HOW_TO_COMPLAIN.search(text):
        return Route(Action.human, reason="complaint")

    content = _content(text, _CHITCHAT_WORDS)
    if not content or _CHITCHAT_FULL.search(text):
        return Route(Action.chitchat, reason="small talk")
    if (
        _PRAISE.search(text)
        and not parse_location(text)  # "3栋2单元1102，谢谢" completes a work order
        and not (_GRIEVANCE.search(text) or _REPAIR.search(text) or _ASKS.search(text))
    ):
        return Route(Action.chitchat, reason="thanks")  # "钱包竟然主动来找我了，真是太谢谢你们了！"

    if _REPAIR.search(text) and not _PROCESS_QUESTION.search(text):
        return Route(Action.work_order, reason="repair or service request")

    rest = _content(_CHITCHAT_WORDS.sub("", text), _VAGUE)
    location_only = (
        parse_location(text)
        and len(_SPACE_PUNCT.sub("", re.sub(r"[\d栋幢号楼座单元室房一二三四五六七八九十]", "", text))) <= 2
    )
    if len(rest) <= 1 or location_only:
        return Route(Action.clarify, reason="too vague", vague=True)
    statement = len(_SPACE_PUNCT.sub("", text)) >= STATEMENT and not _ASKS.search(text)
    return Route(
        None, reason="statement" if statement else "question", vague=len(rest) <= 2, statement=statement
    )


_ASKS = _rx(
    r"[?？]", r"吗", r"请问", r"咨询", r"想问", r"想了解", r"怎么", r"如何", r"多少", r"多久", r"哪(里|儿|个|些)", r"能否",
    r"是否", r"可否", r"可以.{0,8}(吗|么)", r"(是|为|干|做|用)(什么|啥)", r"干嘛", r"什么(时候|意思|情况|原因|标准|规定|流程|手续|材料)", r"啥(时候|意思)", r"咋", r"怎样", r"何时", r"几点", r"有没有", r"能不能", r"要不要",
    r"需不需要", r"么$", r"呢$",
)  # fmt: skip


def _route_letter(text: str) -> Route:
    """A letter or a transcript, read by what it asks for: a hazard or a grievance goes to a
    person (with the work order, when it also asks for a repair), thanks are thanks, a plain
    repair is a work order, and a question is for the knowledge base, or a person if it cannot
    answer (never "please rephrase" to someone who wrote a careful letter)."""
    repair = bool(_REPAIR.search(text))
    urgent = bool(_HASTE.search(text))
    if _PERSON.search(text):
        return Route(
            Action.human, reason="asked for a person", repair=repair, substantial=True, urgent=urgent
        )
    complaint = _COMPLAINT.search(text) and not _HOW_TO_COMPLAIN.search(text)
    grievance = complaint or _GRIEVANCE.search(text)
    if not complaint and not _WRONG.search(text) and _THANKS.search(text):
        return Route(Action.chitchat, reason="thanks", substantial=True, urgent=urgent)
    if not grievance and _PRAISE.search(text) and _PRAISED.search(text):
        return Route(Action.chitchat, reason="thanks", substantial=True, urgent=urgent)
    if grievance:
        return Route(Action.human, reason="complaint", repair=repair, substantial=True, urgent=urgent)
    if repair and not _PROCESS_QUESTION.search(text):
        return Route(Action.work_order, reason="repair or service request", substantial=True, urgent=urgent)
    if _ASKS.search(text):
        return Route(None, reason="question", substantial=True, urgent=urgent)
    # It states something and asks nothing we could look up: a person reads it.
    return Route(Action.human, reason="letter", substantial=True, urgent=urgent)


WORK_ORDER_CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("绿化", _rx(r"草坪", r"草地", r"绿化", r"树枝", r"树木", r"修剪", r"花坛", r"浇水", r"杂草")),
    (
        "保洁",
        _rx(
            r"垃圾",
            r"保洁",
            r"卫生(?!间)",  # 卫生间 is a place (a bathroom light is engineering)
            r"打扫",
            r"清扫",
            r"狗屎",
            r"粪便",
            r"小广告",
            r"死老鼠",
            r"蚊子",
            r"苍蝇",
            r"消杀",
            r"臭",
            r"纸箱",
            r"杂物",
            r"清理",
            r"清运",
            r"喷泉池",
            r"脏",
        ),
    ),
    (
        "秩序",
        _rx(
            r"车位",
            r"占",
            r"挪车",
            r"停车",
            r"消防通道",
            r"道闸",
            r"保安",
            r"噪音",
            r"吵",
            r"装修",
            r"狗.{0,4}叫",
            r"宠物",
            r"烧烤",
            r"油烟",
            r"门岗",
            r"外来",
            r"堵",
        ),
    ),
    (
        "工程",
        _rx(
            r"灯",
            r"电梯",
            r"水管",
            r"漏",
            r"渗",
            r"滴",
            r"下水",
            r"堵",
            r"马桶",
            r"地漏",
            r"门禁",
            r"对讲",
            r"闭门器",
            r"门",
            r"锁",
            r"井盖",
            r"瓷砖",
            r"减速带",
            r"消防栓",
            r"水箱",
            r"电",
            r"跳闸",
            r"墙",
            r"窗",
            r"水压",
            r"没水",
            r"滑梯",
            r"报警器",
            r"信报箱",
            r"台阶",
            r"排水",
        ),
    ),
]


def work_order_category(text: str) -> str:
    """工程 / 保洁 / 秩序 / 绿化 / 客服: the team a request goes to (工程 wins ties with 秩序 on 堵:
    a blocked drain is engineering, a blocked fire lane is order)."""
    text = normalise(text)
    if re.search(r"消防通道|车位|挪车|被.{0,4}占", text):
        return "秩序"
    if re.search(r"下水|马桶|地漏|排水", text):
        return "工程"
    for name, pattern in WORK_ORDER_CATEGORIES:
        if pattern.search(text):
            return name
    return "客服"


FOLLOW_UP = _rx(
    r"^(那|那么|这个|这|它|还有)", r"^(要|得|需要)?多久", r"^多少钱", r"^(什么|几)时候", r"^几点", r"^在哪",
    r"^怎么(收费|算)", r"^(收|要)钱吗", r"^然后呢", r"^会.{0,4}吗",
)  # fmt: skip


def is_follow_up(text: str) -> bool:
    """A short question that only makes sense after the previous turn ("那要多久？")."""
    text = normalise(text)
    return len(text) <= 14 and bool(FOLLOW_UP.search(text))


def mostly_location(text: str, location: Location) -> bool:
    """The message gives a place ("我在3栋", "1102室", "5-2-702") rather than mentioning a number
    in passing ("2024年的物业费怎么交", "120平的物业费多少")."""
    if location.building:
        return True
    rest = re.sub(r"[\d栋幢号楼座单元室房一二三四五六七八九十]", "", normalise(text))
    rest = re.sub(r"^(我|我家|我们家|家)?(在|住|是)?", "", _SPACE_PUNCT.sub("", rest))
    return len(rest) <= 2
